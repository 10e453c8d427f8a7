"""Property: concurrent text queries that share micro-batches never fail each other.

Each generated round sends ordinary queries, queries salted with emoji and invisible characters (which
must be answered), and hostile strings (lone surrogates, control characters, only invisible characters,
10k characters; which must be refused with a 4xx) all at once, so they ride in the same micro-batches.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import httpx
from api_support import LiveServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

BASES = [
    "many green trees around a white building",
    "an airport with planes parked near the terminal",
    "a river crosses a dense residential area",
    "storage tanks beside a parking lot",
    "a baseball field next to a road",
]
INVISIBLE = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u200e", "\u200f", "\u202a", "\u202e", "\u2066"]
EMOJI = ["\U0001f30a", "\U0001f3d8\ufe0f", "\u2708\ufe0f", "\U0001f1fa\U0001f1f8", "\U0001f333"]
CONTROLS = [chr(c) for c in [*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), *range(0x7F, 0xA0)]]


def _ordinary() -> st.SearchStrategy[str]:
    """Distinct each time, so the query cache cannot answer it without the batchers."""
    return st.builds(lambda base, n: f"{base} number {n}", st.sampled_from(BASES), st.integers(0, 10**9))


def _insert(text: str, extra: str, at: int) -> str:
    at %= len(text) + 1
    return text[:at] + extra + text[at:]


def _salted() -> st.SearchStrategy[str]:
    extras = st.lists(st.sampled_from(INVISIBLE + EMOJI), min_size=1, max_size=4).map("".join)
    return st.builds(_insert, _ordinary(), extras, st.integers(0, 200))


def _hostile() -> st.SearchStrategy[str]:
    surrogate = st.integers(0xD800, 0xDFFF).map(chr)
    return st.one_of(
        st.builds(_insert, _ordinary(), surrogate, st.integers(0, 200)),
        st.builds(_insert, _ordinary(), st.sampled_from(CONTROLS), st.integers(0, 200)),
        st.lists(st.sampled_from([*INVISIBLE, " ", "\t"]), min_size=1, max_size=30).map("".join),
        st.builds(lambda base, n: (f"{base} {n} " * 400)[:10_000], st.sampled_from(BASES), st.integers(0, 10**9)),
    )


def _post(client: httpx.Client, query: str) -> int:
    # json.dumps escapes lone surrogates as \udXXX: valid JSON that a UTF-8 encoder could not produce
    body = json.dumps({"query": query, "k": 5}).encode("ascii")
    return client.post("/v1/search/text", content=body, headers={"Content-Type": "application/json"}).status_code


@settings(max_examples=15, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(
    ordinary=st.lists(_ordinary(), min_size=2, max_size=6),
    salted=st.lists(_salted(), min_size=1, max_size=3),
    hostile=st.lists(_hostile(), min_size=1, max_size=3),
)
def _round(server: LiveServer, ordinary: list[str], salted: list[str], hostile: list[str]) -> None:
    queries = [*ordinary, *hostile, *salted]
    with httpx.Client(base_url=server.url, timeout=120) as client, ThreadPoolExecutor(len(queries)) as pool:
        statuses = list(pool.map(lambda q: _post(client, q), queries))
    answered = statuses[: len(ordinary)] + statuses[len(ordinary) + len(hostile) :]
    refused = statuses[len(ordinary) : len(ordinary) + len(hostile)]
    assert answered == [200] * len(answered), list(zip(ordinary + salted, answered, strict=False))
    assert all(400 <= status < 500 for status in refused), list(zip(hostile, refused, strict=True))


def test_concurrent_hostile_queries_fail_only_themselves(server: LiveServer) -> None:
    _round(server)


def test_lone_surrogate_is_named(server: LiveServer) -> None:
    response = httpx.post(
        f"{server.url}/v1/search/text",
        content=b'{"query": "\\ud800river"}',
        headers={"Content-Type": "application/json"},
        timeout=60,
    )
    assert response.status_code == 422, response.text
    assert "surrogate" in response.json()["message"] and "U+D800" in response.json()["message"]


def test_only_invisible_characters_is_an_empty_query(server: LiveServer) -> None:
    response = httpx.post(f"{server.url}/v1/search/text", json={"query": "\u200b\u200b\u2060\ufeff"}, timeout=60)
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "empty_query"


def test_zero_width_space_separates_words(server: LiveServer) -> None:
    response = httpx.post(f"{server.url}/v1/search/text", json={"query": "river\u200bbank"}, timeout=60)
    assert response.status_code == 200, response.text
    assert response.json()["normalized_query"] == "river bank"
