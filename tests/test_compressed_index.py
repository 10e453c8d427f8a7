"""Compressed indexes with exact re-scoring from the memory-mapped vector file, and memory-mapped loading."""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np
import pytest
from vector_store_helpers import clustered, publish_store

from index.ivf_append import append_to_live
from index.layout import IMAGE_VECTORS, IMAGES_INDEX
from index.refine import rescore
from index.store import IndexVersion, open_version
from index.vector_file import VectorFile, write_vector_files
from index.vectors import (
    DEFAULT_REFINE,
    IndexSpec,
    build_index,
    recall_at,
    row_lookup,
    search_with,
    set_search_parameter,
    tuning_queries,
)

COUNT = 1200


@pytest.fixture(scope="module")
def small() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    vectors = clustered(COUNT, 5)
    ids = np.random.default_rng(6).choice(2**62, COUNT, replace=False).astype(np.int64) + 1
    return vectors, ids, clustered(50, 7)


def test_vector_file_returns_each_id_its_own_row(tmp_path: Path) -> None:
    vectors = np.random.default_rng(0).standard_normal((500, 8)).astype(np.float32)
    ids = np.random.default_rng(1).permutation(10_000)[:500].astype(np.int64)
    write_vector_files(tmp_path / "ids.npy", tmp_path / "v.npy", ids, vectors, chunk=64)  # several chunks
    stored = VectorFile.open(tmp_path / "ids.npy", tmp_path / "v.npy")
    assert np.array_equal(stored.ids, np.sort(ids))
    pick = ids[[7, 3, 499, 0]]
    assert np.array_equal(stored.get(pick), vectors[[7, 3, 499, 0]])
    assert stored.get(pick.reshape(2, 2)).shape == (2, 2, 8)
    unknown = int(np.setdiff1d(np.arange(10_001), ids)[0])
    with pytest.raises(KeyError, match=str(unknown)):
        stored.get(np.array([ids[0], unknown]))


def test_rescore_orders_candidates_exactly_and_pads() -> None:
    vectors = np.eye(4, dtype=np.float32)
    ids = np.array([10, 20, 30, 40], np.int64)
    query = np.array([[0.1, 0.9, 0.5, 0.0]], np.float32)
    scores, found = rescore(query, np.array([[30, -1, 10, 20]]), row_lookup(vectors, ids), 4)
    assert found.tolist() == [[20, 30, 10, -1]]
    assert scores[0, :3].tolist() == pytest.approx([0.9, 0.5, 0.1]) and np.isneginf(scores[0, 3])


@pytest.mark.parametrize("kind", ["sq8", "ivf-pq"])
def test_refined_index_returns_the_exact_top_k_when_the_short_list_covers_the_archive(
    tmp_path: Path, small, kind: str
) -> None:
    vectors, ids, captions = small
    # k x refine_factor >= every vector, and for IVF every list probed: the short list is the whole archive
    spec = IndexSpec(kind=kind, refine_factor=COUNT // 10, nlist=8, nprobe=8, pq_m=6)
    publish_store(tmp_path, vectors, ids, captions, spec)
    exact_scores = captions @ vectors.T
    order = np.argsort(-exact_scores, axis=1, kind="stable")[:, :10]
    with open_version(tmp_path) as version:
        info = version.manifest.index
        assert (info["kind"], info["refine_factor"], info["recall"]) == (kind, COUNT // 10, 1.0)
        assert info["bytes_per_item"] < vectors.shape[1] * 4 / 2  # codes, not floats, in the index
        assert info["vector_file_bytes_per_item"] == pytest.approx(vectors.shape[1] * 4, abs=1)
        scores, found = version.search_images(captions, 10)
        assert np.array_equal(found, ids[order])
        np.testing.assert_allclose(scores, np.take_along_axis(exact_scores, order, axis=1), rtol=1e-5)
        # the codes alone do not rank exactly: the re-scoring is what makes the answer exact
        _, by_codes = version.image_index.search(captions, 10)
        assert not np.array_equal(by_codes, found)
        # stored vectors are the exact floats, not decoded codes
        assert np.array_equal(version.image_vectors(ids[:5]), vectors[:5])


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf", "sq8", "ivf-pq"])
def test_memory_mapped_version_answers_as_the_one_read_into_ram(tmp_path: Path, small, kind: str) -> None:
    vectors, ids, captions = small
    publish_store(tmp_path, vectors, ids, captions, IndexSpec(kind=kind, flat_max=100, nlist=16, pq_m=6))
    with open_version(tmp_path) as mapped:
        with IndexVersion(mapped.number, mapped.path, mmap=False) as in_ram:
            among = ids[::3]
            assert mapped.manifest.index["kind"] == kind
            for a, b in (
                (mapped.search_images(captions, 20), in_ram.search_images(captions, 20)),
                (mapped.search_images_in(captions, 20, among), in_ram.search_images_in(captions, 20, among)),
                (mapped.search_captions(captions, 5), in_ram.search_captions(captions, 5)),
            ):
                assert np.array_equal(a[1], b[1]) and np.array_equal(a[0], b[0])
            maps = Path("/proc/self/maps").read_text()
            index_file = str(mapped.path / IMAGES_INDEX)
            assert str(mapped.path / IMAGE_VECTORS) in maps
            assert index_file in maps  # FAISS maps the codes (IVF lists, flat and 8-bit codes) instead of reading


@pytest.mark.parametrize("kind", ["ivf", "ivf-pq"])
def test_update_appends_to_the_live_lists_until_the_share_calls_for_retraining(
    tmp_path: Path, small, kind: str
) -> None:
    vectors, ids, captions = small
    spec = IndexSpec(kind=kind, nlist=8, pq_m=6)
    publish_store(tmp_path, vectors[:1000], ids[:1000], captions, spec)
    # the next archive: 50 items gone, 150 new (15% of it, below APPEND_MAX_SHARE)
    next_vectors, next_ids = vectors[50:1150], ids[50:1150]
    with open_version(tmp_path) as live:
        assert live.manifest.index["trained_on"] == 1000
        appended = append_to_live(live, "test", next_vectors, next_ids, spec, captions)
        assert appended is not None
        index, info = appended
        assert (info["kind"], info["trained_on"], info["appended"], info["nlist"]) == (kind, 1000, 150, 8)
        assert "appended 150 and removed 50" in info["reason"] and info["recall"] > 0
        assert index.ntotal == 1100
        new = next_vectors[-150:]
        _, found = search_with(index, info, new, 1, row_lookup(next_vectors, next_ids))
        assert np.array_equal(found[:, 0], next_ids[-150:])  # every appended item is found by its own vector
        _, anywhere = search_with(index, info, vectors[:50], 20, row_lookup(next_vectors, next_ids))
        assert not np.isin(anywhere, ids[:50]).any()  # removed items are gone from the lists
        # more than APPEND_MAX_SHARE new, another model, or another kind: train afresh
        assert append_to_live(live, "test", vectors[500:], ids[500:], spec, captions) is None  # 200 new of 700
        assert append_to_live(live, "another model", next_vectors, next_ids, spec, captions) is None
        assert append_to_live(live, "test", next_vectors, next_ids, IndexSpec(kind="sq8"), captions) is None


def test_tuning_lengthens_the_short_list_when_more_lists_stop_finding_neighbours() -> None:
    """Codes of 2 bytes per 48-d vector rank too coarsely for a short list of 8 x K': more lists only add
    look-alikes. Tuning must lengthen the short list instead of probing every list, and record the recall of
    the setting it chose."""
    vectors = clustered(20_000, 5)
    ids = np.arange(len(vectors), dtype=np.int64)
    index, info = build_index(vectors, ids, IndexSpec(kind="ivf-pq", nlist=64, pq_m=2, recall_k=10))
    assert info["nprobe"] < info["nlist"]
    assert info["refine_factor"] > DEFAULT_REFINE["ivf-pq"]

    queries, _ = tuning_queries(vectors, None, 0)
    truth = faiss.knn(queries, vectors, 10, metric=faiss.METRIC_INNER_PRODUCT)[1]
    lookup = row_lookup(vectors, ids)

    def recall(nprobe: int, factor: int) -> float:
        setting = {"kind": "ivf-pq", "nprobe": nprobe, "refine_factor": factor, "recall_k": 10}
        set_search_parameter(index, setting)
        return recall_at(search_with(index, setting, queries, 10, lookup)[1], truth)

    assert recall(info["nprobe"], info["refine_factor"]) == pytest.approx(info["recall"], abs=1e-4)
    every_list = recall(info["nlist"], DEFAULT_REFINE["ivf-pq"])  # where a sweep of nprobe alone ended
    assert info["recall"] > every_list + 0.1

    _, given = build_index(vectors, ids, IndexSpec(kind="ivf-pq", nlist=64, pq_m=2, recall_k=10, refine_factor=8))
    assert given["refine_factor"] == 8 and given["nprobe"] < given["nlist"]  # a factor given is kept as given
