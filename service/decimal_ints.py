"""Integers that arrive as text (query parameters, form fields, path segments) in one spelling only.

Python's `int()` and pydantic's lax parsing accept `+5`, `05`, `5_0` (= 50), `5.0` and Unicode digits;
a client that sends those has made a mistake the API should name, not guess at.
"""

from __future__ import annotations

import re

from service.errors import ServiceError

CANONICAL_PATTERN = "^(0|[1-9][0-9]*)$"
_CANONICAL = re.compile(r"0|[1-9][0-9]*")


def is_canonical(raw: str) -> bool:
    """Decimal ASCII digits without sign, spaces, separators or leading zeros."""
    return _CANONICAL.fullmatch(raw) is not None


def canonical_int(raw: str, name: str, low: int, high: int) -> int:
    """`raw` as an int in [low, high], or a 422 saying how to write it."""
    if not is_canonical(raw):
        raise ServiceError(
            422,
            "invalid_request",
            f"{name} must be a whole number in plain decimal digits (e.g. 10), got {raw[:40]!r}",
        )
    value = int(raw)
    if not low <= value <= high:
        raise ServiceError(422, "invalid_request", f"{name} must be between {low} and {high}, got {value}")
    return value
