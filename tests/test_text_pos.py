from __future__ import annotations

import json

import pytest

from posapl.pos import POS_COMPONENTS, POS_WORDS, UNUSED_COMPONENTS, PosTagger
from posapl.text import normalize_caption


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("There are four polygonal pond close to each other .", "there are four polygonal pond close to each other"),
        ("A fan-shaped baseball/field: (big)!", "a fan shaped baseball field big"),
        ("here we can see  green   farmland", "here we can see green farmland"),
        ("<person> walks", "person walks"),
    ],
)
def test_normalize_caption_matches_reference_rules(raw: str, expected: str) -> None:
    assert normalize_caption(raw) == expected


def test_normalize_truncates_to_max_words() -> None:
    assert normalize_caption(" ".join(f"w{i}" for i in range(40))).split() == [f"w{i}" for i in range(30)]
    assert normalize_caption("one two three", max_words=2) == "one two"


@pytest.mark.parametrize("raw", ["", "   ", " . ,!? ", "\t"])
def test_normalize_rejects_empty(raw: str) -> None:
    with pytest.raises(ValueError, match="empty"):
        normalize_caption(raw)


def test_pos_map_covers_universal_tags() -> None:
    assert POS_WORDS["PROPN"] == "pronoun" and POS_WORDS["PART"] == "participle"
    assert POS_WORDS["SYM"] == POS_WORDS["X"] == "x"


# POS words the POSAPL authors published for these RSICD test captions (data/finetune_pos/rsicd_test.json).
REFERENCE_POS = {
    "under the long bridge is a wide river .":
        ["adposition", "determiner", "adjective", "noun", "auxiliary", "determiner", "adjective", "noun"],
    "the church is surrounded by residential areas .":
        ["determiner", "noun", "auxiliary", "verb", "adposition", "adjective", "noun"],
    "there are four pond on a bareland near a river .":
        ["pronoun", "verb", "numeral", "noun", "adposition", "determiner", "noun", "adposition", "determiner",
         "noun"],
    "many cars are parked in the parking lot .":
        ["adjective", "noun", "auxiliary", "verb", "adposition", "determiner", "noun", "noun"],
}


def test_pos_words_on_real_captions_match_reference(pos_tagger: PosTagger, data_dir) -> None:
    captions = {c for record in json.loads((data_dir / "rsicd" / "rsicd_test.json").read_text())
                for c in record["caption"]}
    assert set(REFERENCE_POS) <= captions
    texts = [normalize_caption(c) for c in REFERENCE_POS]
    assert pos_tagger.tag(texts) == list(REFERENCE_POS.values())


def test_pos_tagging_batch_of_real_captions(pos_tagger: PosTagger, data_dir) -> None:
    records = json.loads((data_dir / "rsicd" / "rsicd_test.json").read_text())[:50]
    texts = [normalize_caption(c) for record in records for c in record["caption"]]
    tags = pos_tagger.tag(texts)
    assert len(tags) == len(texts)
    assert all(len(words) >= len(text.split()) for words, text in zip(tags, texts))
    assert {w for words in tags for w in words} <= set(POS_WORDS.values())


def test_unknown_pipeline_gives_clear_error() -> None:
    with pytest.raises(RuntimeError, match="spaCy"):
        PosTagger("no_such_pipeline")


def _all_rsicd_captions(data_dir) -> list[str]:
    """Every RSICD caption here, test split and train subset, normalised as queries and training are."""
    rsicd = data_dir / "rsicd"
    test = [c for record in json.loads((rsicd / "rsicd_test.json").read_text()) for c in record["caption"]]
    train = [line for line in (rsicd / "train_caps.txt").read_text().splitlines() if line.strip()]
    return list(dict.fromkeys(normalize_caption(c) for c in test + train))


def test_trimmed_pipeline_tags_all_rsicd_captions_like_the_full_one(pos_tagger: PosTagger, data_dir) -> None:
    """The served tagger loads only the POS components and the POS-setting ruler patterns; the model's POS
    input must stay exactly the full pipeline's on every caption (a few seconds)."""
    assert pos_tagger.nlp.pipe_names == list(POS_COMPONENTS)
    full = PosTagger(full=True)
    assert set(UNUSED_COMPONENTS) <= set(full.nlp.component_names)
    texts = _all_rsicd_captions(data_dir)
    assert len(texts) > 4500  # 9,465 captions, 4,765 distinct after normalisation
    assert pos_tagger.tag(texts) == full.tag(texts)
