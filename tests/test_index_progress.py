"""The caption bank embeds each distinct caption once, and every long step of a build reports progress."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from index_helpers import copy_images, rsicd_names, tiny_settings

from index import captions as index_captions
from index.job import run_update
from index.store import open_version
from posapl.encode import embed_captions
from posapl.pos import PosTagger

BANK = [
    "Many planes are parked at the airport.",
    "many planes are parked at the airport",  # normalises to the line above
    "A river runs through green farmland.",
    "Many planes are parked at the airport.",  # verbatim repeat
    "dense forest .",
    "A river runs through green farmland.",
]


def _build(tmp_path: Path, arch: Path, progress: bool) -> Path:
    images = tmp_path / "archive"
    copy_images(rsicd_names(3), images)
    bank = tmp_path / "bank.txt"
    bank.write_text("\n".join(BANK) + "\n")
    root = tmp_path / "store"
    settings = tiny_settings(root, arch, [images], captions=[bank], progress=progress)
    run_update(root, settings, settings.store_config())
    return root


def test_each_distinct_caption_is_embedded_once_and_every_row_is_kept(
    tmp_path: Path, tiny_arch_path: Path, tiny_model, monkeypatch: pytest.MonkeyPatch
) -> None:
    encoded: list[str] = []
    real = index_captions.encode_texts

    def counting(model, captions, pos, batch_size=256, truncate=True):
        encoded.extend(captions)
        return real(model, captions, pos, batch_size=batch_size, truncate=truncate)

    monkeypatch.setattr(index_captions, "encode_texts", counting)
    root = _build(tmp_path, tiny_arch_path, progress=False)
    assert sorted(encoded) == sorted(set(encoded)) and len(encoded) == 3
    with open_version(root) as version:
        assert [c.text for c in version.all_captions()] == BANK
        vectors = version.caption_index.reconstruct_batch(version.caption_ids())
    assert np.array_equal(vectors[0], vectors[1]) and np.array_equal(vectors[0], vectors[3])
    assert np.array_equal(vectors[2], vectors[5])
    # the same vectors as embedding the captions one by one (zero adapters: both are the base model)
    alone = embed_captions(tiny_model, PosTagger(), [BANK[0], BANK[2], BANK[4]])
    assert np.allclose(vectors[[0, 2, 4]], alone, atol=1e-5)


def test_every_long_step_shows_progress_and_none_when_disabled(
    tmp_path: Path, tiny_arch_path: Path, capsys: pytest.CaptureFixture
) -> None:
    _build(tmp_path / "shown", tiny_arch_path, progress=True)
    shown = capsys.readouterr().err
    for step in (
        "hashing",
        "embedding",
        "embedding captions",
        "image profiles",
        "caption profiles",
        "building the FAISS indexes",
        "publishing the version: done in",
    ):
        assert step in shown, step
    assert "caption/s" in shown or "s/caption" in shown  # the bar shows a rate
    _build(tmp_path / "quiet", tiny_arch_path, progress=False)
    assert capsys.readouterr().err == ""
