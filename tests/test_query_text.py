"""The service's query-cleaning rule and the redaction of server paths from error messages."""

from __future__ import annotations

import pytest

from posapl.text import normalize_caption
from service.errors import SERVER_PATH, ServiceError, redact_paths
from service.query_text import clean_query


@pytest.mark.parametrize(
    ("raw", "caption"),
    [
        ("river\u200bbank", "river bank"),
        ("\u202eriver\u202c", "river"),
        ("a \U0001f30a wave", "a \U0001f30a wave"),
        ("tree\u00adline", "treeline"),
        ("Many green trees.", "many green trees"),
        ("two\tlines\nhere", "two\tlines\nhere"),
    ],
)
def test_invisible_characters_are_whitespace(raw: str, caption: str) -> None:
    assert normalize_caption(clean_query(raw, 1000)) == normalize_caption(caption)


@pytest.mark.parametrize("raw", ["\u200b\u200b", "\ufeff \u2060", "\u3164"])
def test_only_invisible_characters_is_empty(raw: str) -> None:
    with pytest.raises(ValueError):
        normalize_caption(clean_query(raw, 1000))


@pytest.mark.parametrize(
    ("raw", "named"),
    [("\ud800river", "U+D800"), ("river\udfff", "U+DFFF"), ("a\x00b", "NUL"), ("a\x1bb", "U+001B"), ("\x85", "U+0085")],
)
def test_text_that_is_not_text_is_refused_by_name(raw: str, named: str) -> None:
    with pytest.raises(ServiceError) as refused:
        clean_query(raw, 1000)
    assert refused.value.status == 422 and named in refused.value.message


def test_length_is_checked_first() -> None:
    with pytest.raises(ServiceError, match="limit is 10"):
        clean_query("\ud800" * 11, 10)


def test_redaction_keeps_api_routes_and_hides_server_folders() -> None:
    message = "cannot identify image file '/tmp/x/a.tif'; see /v1/search/text and data/index/versions/3"
    redacted = redact_paths(message, ["data/index"])
    assert "/tmp/x" not in redacted and "data/index" not in redacted
    assert "/v1/search/text" in redacted and redacted.count(SERVER_PATH) == 2
