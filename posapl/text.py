"""Caption normalisation exactly as the reference applies it to training, evaluation and queries."""

from __future__ import annotations

import re

_PUNCTUATION = re.compile(r"[,.'!?\"()*#:;~]")
_SPACES = re.compile(r"\s{2,}")


def normalize_caption(text: str, max_words: int = 30) -> str:
    """Lower-case, drop punctuation, turn '-' and '/' into spaces, collapse spaces, keep `max_words` words.

    Matches the reference's `pre_caption`; the one deliberate difference is that a caption left with only
    whitespace (the reference keeps e.g. a lone tab) is rejected like an empty one.
    """
    caption = _PUNCTUATION.sub("", text.lower()).replace("-", " ").replace("/", " ").replace("<person>", "person")
    caption = _SPACES.sub(" ", caption).rstrip("\n").strip(" ")
    words = caption.split(" ")
    if len(words) > max_words:
        caption = " ".join(words[:max_words])
    if not caption.strip():
        raise ValueError(f"caption {text[:80]!r} is empty after normalisation")
    return caption
