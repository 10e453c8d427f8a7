"""Cleaning a client's query text before it reaches the tagger, the tokenizer or the cache.

JSON can carry strings that are not text (lone UTF-16 surrogates), control characters and invisible
format characters (zero-width spaces, bidi controls). The first two are refused with a 422 that names the
character; invisible characters are treated as whitespace, so a query of nothing but them is an empty
query. Training captions never pass through here: `posapl.text.normalize_caption` stays the reference's
`pre_caption`.
"""

from __future__ import annotations

import unicodedata

from service.errors import ServiceError

WHITESPACE_CONTROLS = frozenset("\t\n\r")
# Letters and symbols that render as nothing; Unicode classes them as Lo/So, not as format characters.
BLANK_GLYPHS = frozenset("\u115f\u1160\u3164\uffa0\u2800")
SOFT_HYPHEN = "\u00ad"  # invisible inside a word: dropped rather than splitting the word


def _codepoint(char: str) -> str:
    return f"U+{ord(char):04X}"


def clean_query(query: str, max_chars: int) -> str:
    """The query with invisible characters turned into spaces; a `ServiceError` for text that is not text."""
    if len(query) > max_chars:
        raise ServiceError(422, "query_too_long", f"query has {len(query)} characters; the limit is {max_chars}")
    cleaned = []
    for position, char in enumerate(query):
        category = unicodedata.category(char)
        if category == "Cs":
            raise ServiceError(
                422,
                "invalid_query",
                f"query contains a lone surrogate ({_codepoint(char)} at position {position}), which is not "
                "encodable as UTF-8; send Unicode text",
            )
        if category == "Cc" and char not in WHITESPACE_CONTROLS:
            name = "a NUL character" if char == "\x00" else "a control character"
            raise ServiceError(
                422,
                "invalid_query",
                f"query contains {name} ({_codepoint(char)} at position {position}); remove it",
            )
        if char == SOFT_HYPHEN:
            continue
        cleaned.append(" " if category == "Cf" or char in BLANK_GLYPHS else char)
    return "".join(cleaned)
