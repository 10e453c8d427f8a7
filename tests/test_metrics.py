from __future__ import annotations

import numpy as np
import pytest

from posapl.metrics import retrieval_metrics


def brute_force(sims: np.ndarray, img2txt: dict, txt2img: dict) -> dict:
    """The reference's loops, transcribed."""
    ranks = np.zeros(sims.shape[0])
    for index, score in enumerate(sims):
        inds = np.argsort(score)[::-1]
        ranks[index] = min(np.where(inds == i)[0][0] for i in img2txt[index])
    tr = [100.0 * len(np.where(ranks < k)[0]) / len(ranks) for k in (1, 5, 10)]
    ranks = np.zeros(sims.shape[1])
    for index, score in enumerate(sims.T):
        inds = np.argsort(score)[::-1]
        ranks[index] = np.where(inds == txt2img[index])[0][0]
    ir = [100.0 * len(np.where(ranks < k)[0]) / len(ranks) for k in (1, 5, 10)]
    r_mean = (sum(tr) / 3 + sum(ir) / 3) / 2
    keys = ["txt_r1", "txt_r5", "txt_r10", "img_r1", "img_r5", "img_r10", "r_mean"]
    return {k: round(v, 2) for k, v in zip(keys, [*tr, *ir, r_mean])}


def ground_truth(n_images: int, per_image: int = 5) -> tuple[dict, dict]:
    img2txt = {i: list(range(i * per_image, (i + 1) * per_image)) for i in range(n_images)}
    txt2img = {t: i for i, ts in img2txt.items() for t in ts}
    return img2txt, txt2img


@pytest.mark.parametrize("seed", range(5))
def test_matches_reference_loops(seed: int) -> None:
    rng = np.random.default_rng(seed)
    img2txt, txt2img = ground_truth(40)
    sims = rng.normal(size=(40, 200)).astype(np.float32)
    sims[:, 10:30] = np.round(sims[:, 10:30], 1)  # ties
    sims[5] = sims[6]
    assert retrieval_metrics(sims, img2txt, txt2img) == brute_force(sims, img2txt, txt2img)


def test_perfect_and_known_values() -> None:
    img2txt, txt2img = ground_truth(20, per_image=1)
    assert retrieval_metrics(np.eye(20), img2txt, txt2img)["r_mean"] == 100.0
    sims = np.eye(20)
    sims[0] = 0
    sims[0, 19] = 1  # image 0 ranks its caption behind caption 19 and later
    result = retrieval_metrics(sims, img2txt, txt2img)
    assert result["txt_r1"] == 95.0
    assert set(result) == {"txt_r1", "txt_r5", "txt_r10", "img_r1", "img_r5", "img_r10", "r_mean"}


def test_rejects_bad_shapes() -> None:
    img2txt, txt2img = ground_truth(3)
    with pytest.raises(ValueError, match="images x texts"):
        retrieval_metrics(np.zeros(3), img2txt, txt2img)
    with pytest.raises(ValueError, match="ground truth"):
        retrieval_metrics(np.zeros((3, 14)), img2txt, txt2img)


def test_separately_scored_directions() -> None:
    rng = np.random.default_rng(9)
    img2txt, txt2img = ground_truth(30)
    i2t = rng.normal(size=(30, 150))
    t2i = rng.normal(size=(150, 30))
    split = retrieval_metrics(i2t, img2txt, txt2img, t2i)
    assert {k: split[k] for k in ("txt_r1", "txt_r5", "txt_r10")} == {
        k: v for k, v in brute_force(i2t, img2txt, txt2img).items() if k.startswith("txt")}
    assert {k: split[k] for k in ("img_r1", "img_r5", "img_r10")} == {
        k: v for k, v in brute_force(t2i.T, img2txt, txt2img).items() if k.startswith("img")}
    with pytest.raises(ValueError, match="sims_t2i"):
        retrieval_metrics(i2t, img2txt, txt2img, t2i.T)
