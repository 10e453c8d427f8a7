"""SIGKILL `posapl index update` mid-embedding, mid-publish and at random points: the live version must stay
complete and valid, and the next run must finish the job without duplicates, reusing embedded batches."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from index_helpers import copy_images, rsicd_names, tiny_settings

from index.job import PAUSE_MARKER, run_update
from index.layout import STAGING_PREFIX, WORK, file_sha256
from index.store import IndexStore, open_version

UPDATE = [
    sys.executable,
    "-m",
    "posapl.cli",
    "index",
    "update",
    "--batch-size",
    "4",
    "--num-workers",
    "0",
    "--no-progress",
    "--device",
    "cpu",
    "--root",
]


@pytest.fixture
def pending_store(tmp_path: Path, tiny_arch_path: Path) -> tuple[Path, set[str], set[str]]:
    """Published version 1 over 8 images, then 16 added and 2 deleted; returns (root, v1 hashes, final hashes)."""
    images = tmp_path / "archive"
    copy_images(rsicd_names(8, start=400), images)
    root = tmp_path / "store"
    settings = tiny_settings(root, tiny_arch_path, [images])
    run_update(root, settings, settings.store_config())
    before = {file_sha256(p) for p in images.glob("*.jpg")}
    copy_images(rsicd_names(16, start=600), images / "tonight")
    for path in sorted(images.glob("*.jpg"))[:2]:
        path.unlink()
    after = {file_sha256(p) for p in images.rglob("*.jpg")}
    return root, before, after


def _start(root: Path, pause_at: str | None = None) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("POSAPL_FAULT_PAUSE_AT", None)
    if pause_at:
        env["POSAPL_FAULT_PAUSE_AT"] = pause_at
    return subprocess.Popen([*UPDATE, str(root)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _kill_when_paused(root: Path, stage: str) -> None:
    process = _start(root, stage)
    marker = root / PAUSE_MARKER
    deadline = time.monotonic() + 120
    while not (marker.is_file() and marker.read_text() == stage):
        if process.poll() is not None:
            pytest.fail(f"update exited ({process.returncode}) before {stage}: {process.stderr.read().decode()}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"update never reached {stage}")
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    marker.unlink()


def _live_hashes(root: Path) -> set[str]:
    """Hashes of the live version, after checking it completely (manifest, checksums, counts)."""
    with open_version(root) as version:
        records = version.all_images()
        assert len({r.id for r in records}) == len(records) == version.image_index.ntotal
        return {r.sha256 for r in records}


def _finish(root: Path) -> dict:
    process = _start(root)
    _, err = process.communicate(timeout=180)
    assert process.returncode == 0, err.decode()
    return __import__("json").loads((root / "last-run.json").read_text())


def test_kill_mid_embedding_and_mid_publish_then_resume(pending_store) -> None:
    root, before, after = pending_store
    _kill_when_paused(root, "batch:2")
    assert IndexStore(root).current_version() == 1 and _live_hashes(root) == before
    assert len(list((root / WORK).glob("*/batch-*.npz"))) == 2

    _kill_when_paused(root, "staged")
    assert IndexStore(root).current_version() == 1 and _live_hashes(root) == before
    assert list(root.glob(f"{STAGING_PREFIX}*"))

    report = _finish(root)
    assert report["status"] == "published" and report["counts"]["resumed"] == 16
    assert report["counts"]["items_embedded"] == report["counts"]["files_new"] == 16
    assert report["counts"]["files_removed"] == report["counts"]["items_removed"] == 2
    assert IndexStore(root).current_version() == 2 and _live_hashes(root) == after
    assert not list(root.glob(f"{STAGING_PREFIX}*")) and not (root / WORK).exists(), "checkpoints and ROOT/work go"


def test_kill_between_rename_and_pointer_and_after_pointer(pending_store) -> None:
    root, before, after = pending_store
    _kill_when_paused(root, "renamed")
    store = IndexStore(root)
    assert store.current_version() == 1 and _live_hashes(root) == before and 2 in store.versions()

    _kill_when_paused(root, "published")
    assert store.current_version() == 3 and _live_hashes(root) == after

    report = _finish(root)
    assert report["status"] == "unchanged" and report["version"] == 3
    assert _live_hashes(root) == after


def test_kill_at_random_points_after_progress(pending_store) -> None:
    root, before, after = pending_store
    rng = random.Random(1234)
    for _ in range(3):
        process = _start(root)
        deadline = time.monotonic() + 120
        while not list((root / WORK).glob("*/batch-*.npz")) and process.poll() is None:
            assert time.monotonic() < deadline, "update made no progress"
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.4))
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert _live_hashes(root) in (before, after)
    _finish(root)
    assert _live_hashes(root) == after
