"""Recall@K for image-text retrieval, with the reference's definitions and tie order."""

from __future__ import annotations

import numpy as np


def _ranks(sims: np.ndarray) -> np.ndarray:
    """rank[i, j]: position of column j when row i is sorted best first.

    The reference ranks with `np.argsort(row)[::-1]`; reversing numpy's default argsort fixes how ties
    are ordered, so the same call is used here (row-wise on the whole matrix).
    """
    order = np.argsort(sims, axis=1)[:, ::-1]
    ranks = np.empty_like(order)
    rows = np.arange(sims.shape[0])[:, None]
    ranks[rows, order] = np.arange(sims.shape[1])[None, :]
    return ranks


def _recalls(ranks: np.ndarray) -> tuple[float, float, float]:
    return tuple(100.0 * float(np.mean(ranks < k)) for k in (1, 5, 10))


def retrieval_metrics(
    sims: np.ndarray,
    img2txt: dict[int, list[int]],
    txt2img: dict[int, int],
    sims_t2i: np.ndarray | None = None,
) -> dict[str, float]:
    """R@1/5/10 both ways and their mean, in percent rounded to 2 decimals.

    `sims` is images x texts. Image→text counts the best-ranked of an image's captions; text→image the
    rank of the caption's one image, read from `sims_t2i` (texts x images) when the two directions were
    scored separately (re-ranking does), else from `sims.T`.
    """
    sims = np.asarray(sims)
    if sims.ndim != 2 or 0 in sims.shape:
        raise ValueError(f"sims must be a non-empty images x texts matrix, got shape {sims.shape}")
    sims_t2i = sims.T if sims_t2i is None else np.asarray(sims_t2i)
    if sims_t2i.shape != sims.shape[::-1]:
        raise ValueError(f"sims_t2i must be texts x images {sims.shape[::-1]}, got {sims_t2i.shape}")
    if len(img2txt) != sims.shape[0] or len(txt2img) != sims.shape[1]:
        raise ValueError(
            f"sims is {sims.shape[0]} x {sims.shape[1]} but the ground truth has "
            f"{len(img2txt)} images and {len(txt2img)} texts"
        )
    i2t = _ranks(sims)
    image_ranks = np.array([i2t[i, img2txt[i]].min() for i in range(sims.shape[0])])
    t2i = _ranks(sims_t2i)
    text_ranks = t2i[np.arange(sims.shape[1]), [txt2img[t] for t in range(sims.shape[1])]]
    tr1, tr5, tr10 = _recalls(image_ranks)
    ir1, ir5, ir10 = _recalls(text_ranks)
    r_mean = ((tr1 + tr5 + tr10) / 3 + (ir1 + ir5 + ir10) / 3) / 2
    values = {
        "txt_r1": tr1, "txt_r5": tr5, "txt_r10": tr10,
        "img_r1": ir1, "img_r5": ir5, "img_r10": ir10,
        "r_mean": r_mean,
    }
    return {key: round(value, 2) for key, value in values.items()}
