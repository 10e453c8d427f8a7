"""POST/GET /v1/search/text: happy paths, caching, filters, and every bad input the API promises to refuse."""

from __future__ import annotations

import httpx
import pytest

QUERY = "Many green trees are around a white building near a river."


def search(client: httpx.Client, **body) -> httpx.Response:
    return client.post("/v1/search/text", json={"query": QUERY, **body})


@pytest.mark.parametrize("method", ["none", "multivariate", "reciprocal"])
def test_text_search_returns_k_ranked_images(client: httpx.Client, method: str) -> None:
    response = search(client, k=7, rerank=method)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["query"] == QUERY
    assert body["normalized_query"] == "many green trees are around a white building near a river"
    assert body["pos"][:3] == ["adjective", "adjective", "noun"]
    assert body["rerank"] == method
    results = body["results"]
    assert len(results) == 7
    assert len({hit["id"] for hit in results}) == 7
    scores = [hit["score"] for hit in results]
    assert scores == sorted(scores, reverse=True)
    hit = results[0]
    base = str(client.base_url).rstrip("/")  # links are absolute, on the address the request was sent to
    assert hit["image_url"] == f"{base}/v1/images/{hit['id']}"
    assert hit["thumbnail_url"] == f"{base}/v1/images/{hit['id']}/thumbnail"
    assert hit["path"].endswith(".jpg") and hit["width"] == 224 and hit["height"] == 224
    timings = body["timings_ms"]
    assert set(timings) == {"pos", "encode", "search", "rerank", "total"}
    assert all(value >= 0 for value in timings.values())
    assert timings["total"] >= timings["search"]


def test_default_rerank_comes_from_settings(client: httpx.Client) -> None:
    assert search(client).json()["rerank"] == "multivariate"


def test_get_matches_post(client: httpx.Client) -> None:
    posted = search(client, k=5, rerank="none").json()
    got = client.get("/v1/search/text", params={"q": QUERY, "k": 5, "rerank": "none"}).json()
    assert [h["id"] for h in got["results"]] == [h["id"] for h in posted["results"]]
    assert got["pos"] == posted["pos"]


def test_repeated_query_hits_the_cache(client: httpx.Client) -> None:
    query = "a unique query about three storage tanks beside a parking lot"
    first = client.post("/v1/search/text", json={"query": query}).json()
    second = client.post("/v1/search/text", json={"query": query}).json()
    assert second["timings_ms"]["encode"] == 0 and second["timings_ms"]["pos"] == 0
    assert [h["id"] for h in first["results"]] == [h["id"] for h in second["results"]]
    assert first["timings_ms"]["encode"] > 0


def _batch_totals(client: httpx.Client) -> tuple[float, float]:
    """(queries encoded, forward passes) of the text micro-batcher so far, from /metrics."""
    values = {}
    for line in client.get("/metrics").text.splitlines():
        for key in ("sum", "count"):
            if line.startswith(f'posapl_batch_size_{key}{{batcher="text"}}'):
                values[key] = float(line.rsplit(" ", 1)[1])
    return values.get("sum", 0.0), values.get("count", 0.0)


def test_concurrent_queries_are_answered_and_batched(client: httpx.Client) -> None:
    from concurrent.futures import ThreadPoolExecutor

    encoded_before, passes_before = _batch_totals(client)
    queries = [f"an airport with {n} planes parked near the terminal" for n in range(32)]
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda q: client.post("/v1/search/text", json={"query": q}).status_code, queries))
    assert statuses == [200] * len(queries)
    encoded, passes = _batch_totals(client)
    assert encoded - encoded_before == len(queries)
    assert passes - passes_before < len(queries), "concurrent queries should share forward passes"


def test_mtime_filter(client: httpx.Client) -> None:
    assert search(client, filters={"max_mtime": 0}).json()["results"] == []
    assert len(search(client, k=4, filters={"min_mtime": 0}).json()["results"]) == 4


def test_bbox_filter_excludes_images_without_georeference(client: httpx.Client) -> None:
    assert search(client, filters={"bbox": [-180, -90, 180, 90]}).json()["results"] == []


BAD_BODIES = {
    "empty": {"query": ""},
    "whitespace": {"query": " \t\n  "},
    "only punctuation": {"query": "?!.,"},
    "too long": {"query": "a" * 1001},
    "k zero": {"query": "river", "k": 0},
    "k too big": {"query": "river", "k": 101},
    "k not a number": {"query": "river", "k": "ten"},
    "unknown rerank": {"query": "river", "rerank": "magic"},
    "missing query": {"k": 3},
    "query not a string": {"query": 42},
    "unknown field": {"query": "river", "colour": "red"},
    "bbox inverted": {"query": "river", "filters": {"bbox": [10, 10, 0, 0]}},
    "bbox short": {"query": "river", "filters": {"bbox": [0, 0, 1]}},
    "mtime inverted": {"query": "river", "filters": {"min_mtime": 10, "max_mtime": 5}},
    "nul byte": {"query": "river\u0000bank"},
}


@pytest.mark.parametrize("body", BAD_BODIES.values(), ids=BAD_BODIES.keys())
def test_bad_post_bodies_get_clear_4xx(client: httpx.Client, body: dict) -> None:
    response = client.post("/v1/search/text", json=body)
    assert response.status_code == 422, response.text
    error = response.json()
    assert error["error"] and error["message"]


def test_query_length_message_names_the_limit(client: httpx.Client) -> None:
    assert "1000" in client.post("/v1/search/text", json={"query": "b" * 1001}).json()["message"]


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b'{"query": "\xff\xfe river"}', 400),
        (b"not json at all", 400),
        (b"", 422),
        (b'["query"]', 422),
    ],
    ids=["non-utf8", "not-json", "empty-body", "json-array"],
)
def test_undecodable_post_bodies(client: httpx.Client, raw: bytes, status: int) -> None:
    response = client.post("/v1/search/text", content=raw, headers={"Content-Type": "application/json"})
    assert response.status_code == status, response.text
    assert response.json()["message"]


@pytest.mark.parametrize(
    "query_string",
    ["q=%FF%FEriver", "q=", "q=%20%20", "q=river&k=0", "q=river&k=abc", "q=river&rerank=magic", "k=3"],
)
def test_bad_get_queries(client: httpx.Client, query_string: str) -> None:
    response = client.get(f"/v1/search/text?{query_string}")
    assert response.status_code == 422, response.text
    assert response.json()["message"]


def test_non_utf8_get_is_named(client: httpx.Client) -> None:
    assert "UTF-8" in client.get("/v1/search/text?q=%C3%28").json()["message"]
