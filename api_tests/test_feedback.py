"""GET /v1/items/{id}/similar and POST /v1/search/feedback against the session's real server and store.

Expected rankings are computed here from the store's own vectors (exact inner products over every candidate,
and an sklearn fit for `probe`), so each test proves what the server ranks, not only that it answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

QUERY = "Many green trees are around a white building near a river."
TIE = 1e-5  # float32 inner products closer than this may come back in either order


@dataclass(frozen=True)
class Store:
    ids: np.ndarray  # sorted
    vectors: np.ndarray  # row i belongs to ids[i]
    mtimes: np.ndarray
    times: list[str]

    def vector(self, image_id: int) -> np.ndarray:
        return self.vectors[int(np.searchsorted(self.ids, image_id))].astype(np.float64)


@pytest.fixture(scope="module")
def store(index_root: Path) -> Store:
    from index.store import open_version

    with open_version(index_root) as version:
        ids = np.sort(version.image_ids())
        records = version.images(ids)
        return Store(
            ids, version.image_vectors(ids), np.array([r.mtime for r in records]), [r.time for r in records]
        )


def expected_order(store: Store, scores: np.ndarray, among: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ids, scores) of `among`, best first, by `scores` (one per store row)."""
    rows = np.searchsorted(store.ids, among)
    order = np.argsort(-scores[rows], kind="stable")
    return among[order], scores[rows][order]


def assert_ranked(results: list[dict], store: Store, scores: np.ndarray, among: np.ndarray, k: int) -> None:
    """The results are the top k of `among` by `scores`, in order (near-ties may swap), with those scores."""
    want_ids, want_scores = expected_order(store, scores, among)
    got_ids = np.array([hit["id"] for hit in results], np.int64)
    assert len(got_ids) == min(k, len(among))
    assert set(got_ids) <= set(among.tolist())
    got_scores = np.array([hit["score"] for hit in results])
    np.testing.assert_allclose(got_scores, want_scores[: len(got_ids)], atol=1e-4)
    own = scores[np.searchsorted(store.ids, got_ids)]
    np.testing.assert_allclose(got_scores, own, atol=1e-4)
    for rank, image_id in enumerate(got_ids):
        assert image_id == want_ids[rank] or abs(own[rank] - want_scores[rank]) < TIE, f"rank {rank}"


def newer_half(store: Store) -> tuple[float, np.ndarray]:
    """An mtime bound that splits the store, and the ids at or after it."""
    bound = float(np.median(store.mtimes))
    newer = store.ids[store.mtimes >= bound]
    assert 0 < len(newer) < len(store.ids), "the test archive's mtimes must differ"
    return bound, newer


def feedback(client: httpx.Client, **body) -> httpx.Response:
    return client.post("/v1/search/feedback", json=body)


# --- similar items -----------------------------------------------------------------------------------------


def test_similar_ranks_by_the_stored_vector_and_leaves_the_item_out(client: httpx.Client, store: Store) -> None:
    item = int(store.ids[3])
    response = client.get(f"/v1/items/{item}/similar", params={"k": 12, "dedupe_overlaps": "false"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["item_id"] == item and body["matched"] is None
    assert item not in [hit["id"] for hit in body["results"]]
    scores = store.vectors.astype(np.float64) @ store.vector(item)
    assert_ranked(body["results"], store, scores, store.ids[store.ids != item], 12)


def test_similar_respects_a_time_filter(client: httpx.Client, store: Store) -> None:
    """`time_from` keeps items acquired (here: modified) at or after it; a bound between two well-separated
    item times avoids the millisecond precision SQLite compares times with."""
    times = sorted((datetime.fromisoformat(t), image_id) for t, image_id in zip(store.times, store.ids, strict=True))
    middle = times[len(times) // 4 : 3 * len(times) // 4]
    gap, split = max((b[0] - a[0], i) for i, (a, b) in enumerate(zip(middle, middle[1:], strict=False)))
    assert gap > timedelta(milliseconds=4), "the test archive's times must differ"
    bound = middle[split][0] + gap / 2
    newer = np.array(sorted(image_id for t, image_id in times if t >= bound), np.int64)
    item = int(times[0][1])  # older than the bound: it may not come back, nor do the other older items
    response = client.get(
        f"/v1/items/{item}/similar", params={"k": 100, "time_from": bound.isoformat(timespec="milliseconds")}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["matched"] == len(newer)
    scores = store.vectors.astype(np.float64) @ store.vector(item)
    assert_ranked(body["results"], store, scores, newer, 100)


def test_similar_takes_every_get_filter_of_text_search(client: httpx.Client, store: Store) -> None:
    """The scene filters of GET text search work here too: each small image is its own scene, so excluding the
    scenes of the nearest five leaves exactly the others."""
    item = int(store.ids[0])
    top = client.get(f"/v1/items/{item}/similar", params={"k": 5}).json()["results"]
    nearest, scenes = [hit["id"] for hit in top], [hit["scene"]["id"] for hit in top]
    response = client.get(
        f"/v1/items/{item}/similar", params={"k": 100, "exclude_scenes": ",".join(map(str, scenes))}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["matched"] == len(store.ids) - 5  # the filter selects all but the five excluded scenes
    assert len(body["results"]) == len(store.ids) - 6  # and the item itself never comes back
    assert not set(nearest) & {hit["id"] for hit in body["results"]}


def test_similar_as_geojson(client: httpx.Client, store: Store) -> None:
    item = int(store.ids[0])
    response = client.get(f"/v1/items/{item}/similar", params={"k": 5, "format": "geojson"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/geo+json")
    features = response.json()["features"]
    assert len(features) == 5 and str(item) not in [f["id"] for f in features]
    assert [f["properties"]["rank"] for f in features] == [1, 2, 3, 4, 5]


@pytest.mark.parametrize(
    ("url", "status", "words"),
    [
        ("/v1/items/1/similar", 404, "no image with id 1"),
        ("/v1/items/01/similar", 422, "leading zeros"),
        ("/v1/items/{item}/similar?k=0", 422, "k must be between 1 and 100"),
        ("/v1/items/{item}/similar?min_mtime=3", 422, "'min_mtime'"),
        ("/v1/items/{item}/similar?bbox=1,2,3", 422, "bbox must be four numbers"),
    ],
)
def test_similar_refuses_bad_input(client: httpx.Client, store: Store, url: str, status: int, words: str) -> None:
    response = client.get(url.format(item=int(store.ids[0])))
    assert response.status_code == status, response.text
    assert words in response.json()["message"]


# --- relevance feedback: rocchio ---------------------------------------------------------------------------


@pytest.mark.parametrize(("a", "b"), [(None, None), (1.0, 0.5)])
def test_rocchio_equals_the_formula(client: httpx.Client, store: Store, a: float | None, b: float | None) -> None:
    positives, negatives = [int(i) for i in store.ids[[1, 5, 9]]], [int(i) for i in store.ids[[2, 7]]]
    weights = {} if a is None else {"positive_weight": a, "negative_weight": b}
    a, b = (2.0, 1.0) if a is None else (a, b)
    response = feedback(
        client, positive_ids=positives, negative_ids=negatives, k=20, dedupe_overlaps=False, **weights
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["method"] == "rocchio" and body["note"] is None and body["background"] is None
    q = a * np.mean([store.vector(i) for i in positives], axis=0) - b * np.mean(
        [store.vector(i) for i in negatives], axis=0
    )
    q /= np.linalg.norm(q)
    among = np.setdiff1d(store.ids, positives + negatives)
    assert_ranked(body["results"], store, store.vectors.astype(np.float64) @ q, among, 20)


def test_a_query_alone_searches_like_text_search(client: httpx.Client) -> None:
    """The text counts as one more positive: with nothing else labelled, q is the text's own embedding."""
    text = client.post("/v1/search/text", json={"query": QUERY, "k": 10, "rerank": "none"}).json()
    found = feedback(client, query=QUERY, k=10).json()
    assert [h["id"] for h in found["results"]] == [h["id"] for h in text["results"]]
    np.testing.assert_allclose([h["score"] for h in found["results"]], [h["score"] for h in text["results"]], atol=1e-5)


def test_a_query_and_a_positive_combine(client: httpx.Client, store: Store) -> None:
    """q = normalise(2·mean(text, positive)). The text's vector is solved from text search's scores of every
    item (score = text·x), which the store's vectors determine while the embedding has fewer dimensions."""
    text = client.post("/v1/search/text", json={"query": QUERY, "k": 100, "rerank": "none"}).json()["results"]
    assert len(text) == len(store.ids) > store.vectors.shape[1]
    rows = np.searchsorted(store.ids, [hit["id"] for hit in text])
    t = np.linalg.lstsq(store.vectors[rows].astype(np.float64), [hit["score"] for hit in text], rcond=None)[0]
    positive = int(store.ids[4])
    response = feedback(client, query=QUERY, positive_ids=[positive], k=15, dedupe_overlaps=False)
    assert response.status_code == 200, response.text
    q = (t + store.vector(positive)) / np.linalg.norm(t + store.vector(positive))
    among = store.ids[store.ids != positive]
    assert_ranked(response.json()["results"], store, store.vectors.astype(np.float64) @ q, among, 15)


def test_feedback_respects_filters_and_never_returns_labels(client: httpx.Client, store: Store) -> None:
    bound, newer = newer_half(store)
    positives = [int(newer[0]), int(store.ids[store.mtimes < bound][0])]  # one inside the filter, one outside
    negatives = [int(newer[1])]
    response = feedback(
        client, positive_ids=positives, negative_ids=negatives, k=100, filters={"min_mtime": bound}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["matched"] == len(newer)
    among = np.setdiff1d(newer, positives + negatives)
    q = 2 * np.mean([store.vector(i) for i in positives], axis=0) - store.vector(negatives[0])
    assert_ranked(body["results"], store, store.vectors.astype(np.float64) @ (q / np.linalg.norm(q)), among, 100)


@pytest.mark.parametrize("method", ["rocchio", "probe"])
def test_offset_pages_are_disjoint_and_agree_with_one_long_page(client: httpx.Client, store: Store, method: str):
    labels = {"positive_ids": [str(store.ids[0]), int(store.ids[8])], "negative_ids": [int(store.ids[11])]}
    pages = [feedback(client, method=method, k=7, offset=offset, **labels).json() for offset in (0, 7, 14)]
    whole = feedback(client, method=method, k=21, **labels).json()
    ids = [[hit["id"] for hit in page["results"]] for page in pages]
    assert [page["offset"] for page in pages] == [0, 7, 14]
    assert all(len(page) == 7 for page in ids)
    assert len(set(ids[0]) | set(ids[1]) | set(ids[2])) == 21
    assert ids[0] + ids[1] + ids[2] == [hit["id"] for hit in whole["results"]]


# --- relevance feedback: probe -----------------------------------------------------------------------------


def background(pool: np.ndarray, size: int, seed: int) -> np.ndarray:
    """The documented draw: positions chosen in the sorted pool by numpy's default_rng(seed), in id order."""
    pool = np.sort(pool)
    return pool[np.sort(np.random.default_rng(seed).choice(len(pool), min(size, len(pool)), replace=False))]


def probe_scores(store: Store, positives: list[int], negatives: np.ndarray) -> np.ndarray:
    x = np.vstack([[store.vector(i) for i in positives], [store.vector(i) for i in negatives]])
    y = np.r_[np.ones(len(positives)), np.zeros(len(negatives))]
    model = LogisticRegression(class_weight="balanced", max_iter=1000).fit(x, y)
    return model.decision_function(store.vectors.astype(np.float64))


def test_probe_with_positives_only_equals_scoring_every_item(client: httpx.Client, store: Store) -> None:
    positives = [int(i) for i in store.ids[[2, 3, 20, 40]]]
    response = feedback(client, method="probe", positive_ids=positives, k=30, seed=7, dedupe_overlaps=False)
    assert response.status_code == 200, response.text
    body = response.json()
    among = np.setdiff1d(store.ids, positives)
    sample = background(among, 1000, 7)
    assert body["background"] == {"seed": 7, "sampled": len(sample), "pool": len(among)}
    assert "no negatives were labelled" in body["note"] and "background" in body["note"]
    assert_ranked(body["results"], store, probe_scores(store, positives, sample), among, 30)


def test_probe_with_negatives_and_a_filter_samples_the_filtered_set(client: httpx.Client, store: Store) -> None:
    bound, newer = newer_half(store)
    positives, negatives = [int(newer[2]), int(newer[3])], [int(newer[4]), int(store.ids[0])]
    response = feedback(
        client, method="probe", positive_ids=positives, negative_ids=negatives, k=100, seed=3,
        filters={"min_mtime": bound},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    among = np.setdiff1d(newer, positives + negatives)
    sample = background(among, 1000, 3)
    assert body["note"] is None and body["background"]["pool"] == len(among)
    scores = probe_scores(store, positives, np.r_[np.array(negatives, np.int64), sample])
    assert_ranked(body["results"], store, scores, among, 100)


def test_probe_as_geojson(client: httpx.Client, store: Store) -> None:
    response = client.post(
        "/v1/search/feedback?format=geojson", json={"method": "probe", "positive_ids": [int(store.ids[6])], "k": 4}
    )
    assert response.status_code == 200
    features = response.json()["features"]
    assert len(features) == 4 and str(store.ids[6]) not in [f["id"] for f in features]


# --- bad input ---------------------------------------------------------------------------------------------


def test_unknown_ids_are_named(client: httpx.Client, store: Store) -> None:
    response = feedback(client, positive_ids=[int(store.ids[0]), 12345], negative_ids=[678])
    assert response.status_code == 422
    message = response.json()["message"]
    assert "12345" in message and "678" in message and str(store.ids[0]) not in message


def test_too_many_labels(client: httpx.Client, store: Store) -> None:
    response = feedback(client, positive_ids=[int(store.ids[0])], negative_ids=list(range(1, 1001)))
    assert response.status_code == 422
    assert response.json()["error"] == "too_many_labels" and "at most 1000" in response.json()["message"]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({}, "at least one positive_ids entry or a query"),
        ({"negative_ids": ["{a}"]}, "at least one positive_ids entry or a query"),
        ({"positive_ids": ["{a}"], "negative_ids": ["{a}"]}, "labelled both positive and negative"),
        ({"positive_ids": ["0{a}"]}, "leading zeros"),
        ({"positive_ids": [True]}, "not a boolean"),
        ({"positive_ids": ["{a}"], "method": "svm"}, "method"),
        ({"positive_ids": ["{a}"], "offset": 901}, "offset"),
        ({"positive_ids": ["{a}"], "positive_weight": -1}, "positive_weight"),
        ({"positive_ids": ["{a}"], "negative_ids": ["{a}x"]}, "decimal integer"),
        ({"query": "   "}, "query is empty"),
        ({"positive_ids": ["{a}"], "negative_ids": ["{a}"], "positive_weight": 1}, "labelled both"),
    ],
)
def test_bad_feedback_requests_get_422(client: httpx.Client, store: Store, body: dict, words: str) -> None:
    a = str(store.ids[0])
    filled = {key: [v.format(a=a) if isinstance(v, str) else v for v in value] if isinstance(value, list) else value
              for key, value in body.items()}
    response = feedback(client, **filled)
    assert response.status_code == 422, response.text
    assert words in response.json()["message"]


def test_feedback_that_cancels_out_is_refused(client: httpx.Client, store: Store) -> None:
    item = int(store.ids[0])
    other = int(store.ids[1])
    response = feedback(
        client, positive_ids=[item, other], negative_ids=[], positive_weight=0, negative_weight=1
    )
    assert response.status_code == 422
    assert "cancel out" in response.json()["message"]


def test_a_filter_that_leaves_nothing_says_so(client: httpx.Client, store: Store) -> None:
    """The test archive has no georeferenced item, so any bbox selects nothing."""
    response = feedback(client, method="probe", positive_ids=[int(store.ids[0])], filters={"bbox": [0, 0, 1, 1]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["results"] == [] and body["matched"] == 0
    assert body["note"] == "no unlabelled item is left to rank among the filter's matches"
