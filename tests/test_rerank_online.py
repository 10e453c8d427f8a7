"""Online re-ranking: profiles against a reference bank, reverse ranks by binary search, and agreement with
the offline matrix functions (random vectors, then the shared RSICD test split)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks.rerank_agreement import agreeing_queries, copies, offline_is_a_function_of_the_query, offline_top10
from posapl.rerank import (
    PROFILE_HEADER,
    TIE_TOLERANCE,
    build_profiles,
    multivariate_rerank,
    reciprocal_reweight,
    rerank_candidates,
    reverse_ranks,
    sketch_ranks,
)

OFFLINE = {"multivariate": multivariate_rerank, "reciprocal": reciprocal_reweight}


def _unit(rng, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _strictly_greater(bank: np.ndarray, items: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Per item, how many bank vectors are more similar to it than `scores` by more than the tie tolerance."""
    return ((bank @ items.T).astype(np.float64) > scores[None, :] + TIE_TOLERANCE).sum(axis=0)


@pytest.mark.parametrize("bank_size", [1, 5, 64, 65, 1000, 123_457])
@pytest.mark.parametrize("n_quantiles", [2, 16, 64])
def test_sketch_ranks_cover_the_bank(bank_size, n_quantiles) -> None:
    ranks = sketch_ranks(bank_size, n_quantiles)
    assert len(ranks) == n_quantiles
    assert ranks[0] == 0 and ranks[-1] == bank_size - 1
    assert (np.diff(ranks) >= 0).all()
    if bank_size > n_quantiles:
        assert (np.diff(ranks) > 0).all()
        assert np.array_equal(ranks[: n_quantiles // 2], np.arange(n_quantiles // 2))


def test_profiles_hold_sorted_similarities_at_the_sketch_ranks() -> None:
    rng = np.random.default_rng(0)
    items, bank = _unit(rng, 37, 16), _unit(rng, 500, 16)
    profiles = build_profiles(items, bank, n_quantiles=24)
    sims = (items @ bank.T).astype(np.float64)
    assert profiles.shape == (37, 24 + PROFILE_HEADER) and profiles.dtype == np.float32
    assert (profiles[:, 0] == 500).all()
    np.testing.assert_allclose(profiles[:, 1], sims.sum(axis=1), rtol=1e-4, atol=1e-4)
    expected = -np.sort(-sims, axis=1)[:, sketch_ranks(500, 24)]
    np.testing.assert_allclose(profiles[:, PROFILE_HEADER:], expected, atol=1e-6)
    tiny_chunks = build_profiles(items, bank, n_quantiles=24, chunk_bytes=1)
    np.testing.assert_allclose(tiny_chunks, profiles, atol=1e-6)


def test_reverse_ranks_are_exact_on_the_sketch_head_and_bracketed_beyond() -> None:
    rng = np.random.default_rng(1)
    items, bank, queries = _unit(rng, 50, 8), _unit(rng, 3000, 8), _unit(rng, 20, 8)
    profiles = build_profiles(items, bank, n_quantiles=32)
    ranks = sketch_ranks(3000, 32)
    for query in queries:
        scores = items @ query
        true = _strictly_greater(bank, items, scores)
        estimate = reverse_ranks(scores, profiles)
        head = true < 16
        assert np.array_equal(estimate[head], true[head])
        position = np.searchsorted(ranks, true)  # the sketch interval holding the true count
        low = ranks[np.clip(position - 1, 0, 31)] + 1
        high = ranks[np.clip(position, 0, 31)]
        assert ((estimate >= np.minimum(low, true)) & (estimate <= np.maximum(high, true))).all()


def test_reverse_ranks_are_exact_with_a_full_profile_and_ignore_the_query_itself() -> None:
    rng = np.random.default_rng(2)
    items, bank = _unit(rng, 40, 8), _unit(rng, 300, 8)
    profiles = build_profiles(items, bank, n_quantiles=300)
    query = bank[7]  # a query that is in the bank counts the same as one that is not
    scores = (items @ query).astype(np.float32)
    assert np.array_equal(reverse_ranks(scores, profiles), _strictly_greater(bank, items, scores))
    assert (reverse_ranks(np.full(40, 5.0), profiles) == 0).all()
    assert (reverse_ranks(np.full(40, -5.0), profiles) == 300).all()


@pytest.mark.parametrize("method", ["multivariate", "reciprocal"])
def test_online_equals_offline_with_exact_profiles(method) -> None:
    """Bank = the offline query set and profiles that keep the whole bank: the online ranking of every query
    is the offline one (random vectors, so no ties)."""
    rng = np.random.default_rng(3)
    queries, items = _unit(rng, 200, 16), _unit(rng, 150, 16)
    sims = queries @ items.T
    offline = OFFLINE[method](sims)
    profiles = build_profiles(items, queries, n_quantiles=200)
    for q in range(len(queries)):
        candidates = np.argsort(-sims[q])[:60]
        order, scores = rerank_candidates(method, sims[q, candidates], profiles[candidates])
        assert np.array_equal(candidates[order][:10], np.argsort(-offline[q], kind="stable")[:10])
        np.testing.assert_allclose(scores[:10], offline[q, candidates[order][:10]], rtol=1e-5)


def test_none_keeps_the_forward_order() -> None:
    profiles = build_profiles(_unit(np.random.default_rng(4), 5, 4), _unit(np.random.default_rng(5), 9, 4))
    order, scores = rerank_candidates("none", np.array([0.1, 0.5, 0.3, 0.5, 0.0]), profiles)
    assert order.tolist() == [1, 3, 2, 0, 4] and scores.tolist() == [0.5, 0.5, 0.3, 0.1, 0.0]


def test_bad_online_input_is_rejected() -> None:
    rng = np.random.default_rng(6)
    profiles = build_profiles(_unit(rng, 5, 4), _unit(rng, 9, 4))
    with pytest.raises(ValueError, match="unknown re-ranking method"):
        rerank_candidates("fancy", np.zeros(5), profiles)
    with pytest.raises(ValueError, match="1-D"):
        rerank_candidates("reciprocal", np.zeros((5, 1)), profiles)
    with pytest.raises(ValueError, match="finite"):
        rerank_candidates("reciprocal", np.array([0.1, np.nan, 0, 0, 0]), profiles)
    with pytest.raises(ValueError, match="5 query scores but 4"):
        rerank_candidates("multivariate", np.zeros(5), profiles[:4])
    with pytest.raises(ValueError, match="without profiles"):
        rerank_candidates("multivariate", np.zeros(5), np.zeros((5, 0), np.float32))
    with pytest.raises(ValueError, match="k must be positive"):
        rerank_candidates("reciprocal", np.zeros(5), profiles, k=0)
    mixed = profiles.copy()
    mixed[0, 0] = 10
    with pytest.raises(ValueError, match="bank size"):
        reverse_ranks(np.zeros(5), mixed)
    with pytest.raises(ValueError, match="dimension"):
        build_profiles(_unit(rng, 5, 4), _unit(rng, 9, 6))
    with pytest.raises(ValueError, match="empty"):
        build_profiles(np.zeros((0, 4)), _unit(rng, 9, 4))
    with pytest.raises(ValueError, match="NaN"):
        build_profiles(np.full((2, 4), np.nan), _unit(rng, 9, 4))


# --- agreement on real data -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rsicd_embeddings(data_dir, tiny_model, pos_tagger) -> tuple[np.ndarray, np.ndarray]:
    """Tiny random model embeddings of the RSICD test split (images, captions), computed once per module."""
    import torch
    from PIL import Image

    from posapl.encode import embed_captions, encode_images
    from posapl.preprocess import eval_transform

    split = data_dir / "rsicd" / "rsicd_test.json"
    records = json.loads(split.read_text())
    captions = embed_captions(tiny_model, pos_tagger, [c for record in records for c in record["caption"]])
    transform = eval_transform(tiny_model.image_size)
    pixels = []
    for record in records:
        with Image.open(split.parent / record["image"]) as image:
            pixels.append(transform(image.convert("RGB")))
    return encode_images(tiny_model, torch.stack(pixels)), captions


def agreement(queries: np.ndarray, items: np.ndarray, method: str, n_quantiles: int) -> float:
    profiles = build_profiles(items, queries, n_quantiles=n_quantiles)
    return float(agreeing_queries(queries, items, profiles, method, offline_top10(queries, items, method)).mean())


@pytest.mark.parametrize(("direction", "method"), [("text", "reciprocal"), ("image", "reciprocal")])
def test_reciprocal_online_agrees_with_offline_on_rsicd(rsicd_embeddings, direction, method) -> None:
    """Default 64-point sketches; text queries use the full test caption set as bank, image queries the
    test image archive."""
    images, captions = rsicd_embeddings
    queries, items = (captions, images) if direction == "text" else (images, captions)
    assert agreement(queries, items, method, n_quantiles=64) >= 0.95


def test_multivariate_online_agrees_with_offline_on_rsicd_images(rsicd_embeddings) -> None:
    """Image queries (no duplicate images): whole sorted profiles against the 1,093-image archive reproduce
    GaLR's offline top-10."""
    images, captions = rsicd_embeddings
    assert agreement(images, captions, "multivariate", n_quantiles=len(images)) >= 0.95


def test_multivariate_online_agrees_with_offline_on_rsicd_captions(rsicd_embeddings) -> None:
    """Caption queries against the full test caption bank (all 5,465, repeats included), whole profiles.

    RSICD repeats captions, and GaLR's offline top-10 for a caption depends on where numpy's sort puts it
    among its identical copies in each column, so identical captions can get different offline top-10s.
    No online method (a function of the query) can match all of them; agreement is therefore required on
    the queries whose offline top-10 is the same for every copy, which must be most of them.
    """
    images, captions = rsicd_embeddings
    offline_top = offline_top10(captions, images, "multivariate")
    profiles = build_profiles(images, captions, n_quantiles=len(captions))
    same = agreeing_queries(captions, images, profiles, "multivariate", offline_top)
    defined = offline_is_a_function_of_the_query(copies(captions), offline_top)
    assert defined.mean() >= 0.6
    assert same[defined].mean() >= 0.95


def test_service_passes_its_reciprocal_parameters_and_leaves_galr_alone() -> None:
    from service.ranking import rerank

    rng = np.random.default_rng(7)
    items, bank, query = _unit(rng, 30, 8), _unit(rng, 400, 8), _unit(rng, 1, 8)[0]
    profiles = build_profiles(items, bank)
    ids, scores = np.arange(100, 130), (items @ query).astype(np.float32)
    expected = rerank_candidates("reciprocal", scores, profiles, k=20, alpha=0.4)
    _, got, order, applied = rerank("reciprocal", ids, scores, profiles, reciprocal_k=20, reciprocal_alpha=0.4)
    assert applied == "reciprocal" and np.array_equal(order, expected[0])
    np.testing.assert_allclose(got, expected[1], rtol=1e-6)
    assert not np.allclose(got, rerank_candidates("reciprocal", scores, profiles)[1])  # not the defaults
    plain = rerank("reciprocal", ids, scores, profiles, reciprocal_k=20, reciprocal_alpha=0.0)
    assert np.array_equal(plain[2], np.argsort(-scores, kind="stable"))
    galr = rerank("multivariate", ids, scores, profiles, reciprocal_k=20, reciprocal_alpha=0.4)
    assert np.array_equal(galr[2], rerank_candidates("multivariate", scores, profiles)[0])
