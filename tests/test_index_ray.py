"""`posapl index build|update --ray` against a real local Ray cluster (two CPUs, started once for the module).

The cluster build must equal the single-process build (ids, vectors, metadata rows, skipped report), resume
from its checkpoint batches after the driver is SIGKILLed, and still be complete and exact after one of its
embedding actors is SIGKILLed mid-run.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from index_helpers import (
    RSICD_TEST,
    anchored_scene,
    intersecting,
    rewrite_region,
    rsicd_names,
    tiny_settings,
    write_bad_files,
    write_uint16_scene,
)
from rasterio.transform import from_origin

import index.job
from index.cluster import ActorPool, Embedder, collect, decode_batch, plan_pool
from index.embed import WorkItem, WorkLog
from index.job import PAUSE_MARKER, run_update
from index.layout import WORK
from index.store import IndexStore, open_version
from index.tiles import plan_file, tile_count, tile_windows
from index.vectors import stored_vectors
from posapl.checkpoint import load_model

ray = pytest.importorskip("ray")

BATCH = 8
MAX_PIXELS = 4_000_000
ACTOR_TITLE = b"MapBatches(Embedder)"


@pytest.fixture(scope="module")
def cluster() -> str:
    """A two-CPU local cluster for the whole module; its GCS address lets subprocess drivers join it."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> list[Path]:
    """60 RSICD JPEGs, 20 UCM TIFFs and five files that must be skipped, in three source folders."""
    root = tmp_path_factory.mktemp("archive")
    rsicd, ucm = root / "rsicd", root / "ucm"
    rsicd.mkdir()
    ucm.mkdir()
    for name in rsicd_names(60, start=100):
        shutil.copy2(RSICD_TEST / name, rsicd / name)
    for path in sorted((data_dir / "ucm" / "images").glob("*.tif"))[:20]:
        shutil.copy2(path, ucm / path.name)
    write_bad_files(root / "bad")
    return [rsicd, ucm, root / "bad"]


def _settings(root: Path, arch: Path, images: list[Path], **extra: object):
    return tiny_settings(root, arch, images, batch_size=BATCH, max_pixels=MAX_PIXELS, **extra)


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory, archive: list[Path], tiny_arch_path: Path) -> Path:
    """The reference: the same archive built by the in-process path."""
    root = tmp_path_factory.mktemp("single") / "store"
    settings = _settings(root, tiny_arch_path, archive)
    run_update(root, settings, settings.store_config())
    return root


def _content(root: Path) -> tuple[list, dict[int, np.ndarray], list]:
    with open_version(root) as version:
        ids, vectors = stored_vectors(version.image_index)
        records = sorted(version.all_images(), key=lambda r: r.id)
        return records, dict(zip(ids.tolist(), vectors)), version.skipped()


def assert_same_store(root: Path, reference: Path) -> None:
    records, vectors, skipped = _content(root)
    want_records, want_vectors, want_skipped = _content(reference)
    assert records == want_records  # ids and every metadata column
    assert len(records) == 80 and sorted(vectors) == sorted(want_vectors) == [r.id for r in records]
    for image_id, vector in want_vectors.items():
        np.testing.assert_allclose(vectors[image_id], vector, atol=1e-5)
    assert skipped == want_skipped and len(skipped) == 5


def _actor_pids() -> list[int]:
    """Embedding actors of this module's cluster: processes titled after the operator, below this process."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if ACTOR_TITLE not in (entry / "cmdline").read_bytes():
                continue
            pid, parent = int(entry.name), int(entry.joinpath("stat").read_text().rsplit(")", 1)[1].split()[1])
            while parent > 1 and parent != os.getpid():
                parent = int(Path(f"/proc/{parent}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if parent == os.getpid():
            found.append(pid)
    return found


def _batches(root: Path) -> list[Path]:
    return sorted((root / WORK).glob("*/batch-*.npz"))


def _items_in(batch: Path) -> int:
    """Embedded, failed and empty items recorded in one checkpoint batch."""
    with np.load(batch) as data:
        return len(data["keys"]) + len(json.loads(str(data["failures"]))) + len(json.loads(str(data["empty"])))


def test_pool_is_sized_from_cluster_resources() -> None:
    assert plan_pool({"CPU": 2.0}) == ActorPool(1, 0)
    assert plan_pool({"CPU": 16.0}) == ActorPool(8, 0)
    assert plan_pool({"CPU": 64.0, "GPU": 8.0}) == ActorPool(8, 1)
    assert plan_pool({"CPU": 64.0, "GPU": 8.0}, actors=4) == ActorPool(4, 1)
    assert plan_pool({"CPU": 2.0}, actors=3) == ActorPool(3, 0)


@pytest.fixture(scope="module")
def driver_model(tiny_arch_path: Path):
    """The model a store built with `_settings` has: what the driver loads and every actor must reproduce."""
    return load_model(None, "random", "rsicd", str(tiny_arch_path))


def _spec(arch: Path, preset: str = "rsicd") -> dict:
    return {"checkpoint": None, "pretrained": "random", "preset": preset, "arch": str(arch)}


def _nodata_scene(path: Path) -> None:
    """A 3-band 8-bit UTM scene, 300 x 600 px, whose left 250 columns are nodata."""
    data = np.random.default_rng(3).integers(1, 255, size=(3, 300, 600), dtype=np.uint8)
    data[:, :, :250] = 0
    profile = dict(driver="GTiff", width=600, height=300, count=3, dtype="uint8", nodata=0, crs="EPSG:32633")
    with rasterio.open(path, "w", transform=from_origin(500000, 4000000, 10, 10), **profile) as out:
        out.write(data)


def test_collect_refuses_a_lost_item_and_drops_a_repeated_one(
    tmp_path: Path, driver_model, tiny_arch_path: Path
) -> None:
    """The driver's last line of defence: a batch delivered twice is logged once; a lost one stops the run.
    Whole files keep their facts; a nodata window is logged as empty, with no vector."""
    _nodata_scene(tmp_path / "scene.tif")
    scene = plan_file("f" * 64, tmp_path / "scene.tif", [256], 0.25, None, 100, MAX_PIXELS)
    blank, tile = scene.items[0], scene.items[-1]  # x=0 is nodata; the last window holds data
    files = [WorkItem(f"{n:064x}", RSICD_TEST / name) for n, name in enumerate(rsicd_names(3))]
    items = [*files[:2], blank, tile]
    pickled = np.array([pickle.dumps(item) for item in items], dtype=object)
    decoded = decode_batch({"item": pickled}, 224, MAX_PIXELS, min_valid=0.5)
    assert decoded["empty"].tolist() == [False, False, True, False]
    embedded = Embedder(_spec(tiny_arch_path), driver_model.fingerprint(), "cpu")(decoded)
    log = WorkLog(tmp_path / "log")
    assert collect(iter([embedded, embedded]), items, log, None, progress=False) == 3
    state = log.load(driver_model.embed_dim)
    assert sorted(state.vectors) == sorted([files[0].key, files[1].key, tile.key])
    assert state.empty == {blank.key} and not state.failures
    assert sorted(state.facts) == sorted([files[0].key, files[1].key]), "a tile carries no facts of its own"
    assert sum(_items_in(p) for p in log.directory.glob("batch-*.npz")) == 4, "no duplicate rows"
    with pytest.raises(RuntimeError, match="returned 4 of 5 items"):
        collect(iter([embedded]), [*items, files[2]], WorkLog(tmp_path / "lost"), None, progress=False)


def test_actor_refuses_a_model_that_differs_from_the_drivers(driver_model, tiny_arch_path: Path) -> None:
    with pytest.raises(RuntimeError, match="differs from the driver's"):
        Embedder(_spec(tiny_arch_path, preset="rsitmd"), driver_model.fingerprint(), "cpu")


def test_cluster_build_equals_single_process_build(
    cluster: str, archive: list[Path], single: Path, tiny_arch_path: Path, tmp_path: Path
) -> None:
    root = tmp_path / "store"
    settings = _settings(root, tiny_arch_path, archive, ray_address=cluster)
    report = run_update(root, settings, settings.store_config())
    assert report.status == "published" and report.counts["items_embedded"] == 80 and report.counts["skipped"] == 5
    assert_same_store(root, single)
    assert not _batches(root), "checkpoints are cleared once the version is published"


def test_cluster_spreads_scene_windows_and_equals_the_single_process_build(
    cluster: str, data_dir: Path, tiny_arch_path: Path, tmp_path: Path
) -> None:
    """Scenes travel as windows: the cluster makes the same tiles, drops the same nodata ones, embeds alike."""
    archive = tmp_path / "scenes"
    archive.mkdir()
    shutil.copy2(data_dir / "geotiff" / "RGB.byte.tif", archive / "RGB.byte.tif")  # 791 x 718, nodata corners
    _nodata_scene(archive / "border.tif")
    stores, reports = [], []
    for name, extra in (("single", {}), ("ray", {"ray_address": cluster})):
        root = tmp_path / name
        settings = _settings(root, tiny_arch_path, [archive], tile_sizes=[256], min_valid=0.5, **extra)
        reports.append(run_update(root, settings, settings.store_config()))
        stores.append(_content(root))
    (records, vectors, skipped), (want_records, want_vectors, want_skipped) = stores[1], stores[0]
    assert records == want_records and skipped == want_skipped == []
    assert reports[1].counts["scenes"] == 2 and all(r.window is not None for r in records)
    windows = tile_count(791, 718, [256], 0.25) + tile_count(600, 300, [256], 0.25)
    assert 0 < len(records) < windows, "nodata windows are dropped, the rest indexed"
    assert sorted(vectors) == sorted(want_vectors) == [r.id for r in records]
    for image_id, vector in want_vectors.items():
        np.testing.assert_allclose(vectors[image_id], vector, atol=1e-5)


def test_cluster_update_embeds_only_the_changed_windows_of_a_rewritten_scene(
    cluster: str, tiny_arch_path: Path, tmp_path: Path
) -> None:
    """Decode tasks compare each window's pixel digest with the live item's; the actors embed only the windows
    the rewrite touched, and the others keep their id and vector."""
    archive = tmp_path / "scenes"
    archive.mkdir()
    data = anchored_scene(256, 384, seed=3)
    write_uint16_scene(archive / "scene.tif", data)
    root = tmp_path / "store"
    settings = _settings(root, tiny_arch_path, [archive], tile_sizes=[128], tile_overlap=0.0)
    run_update(root, settings, settings.store_config())
    before = _content(root)[1]
    region = (100, 20, 60, 40)
    rewrite_region(archive / "scene.tif", data, region, seed=4)
    report = run_update(root, _settings(root, tiny_arch_path, None, ray_address=cluster))
    touched = intersecting([w for w, _ in tile_windows(384, 256, [128], 0.0)], region)
    assert len(touched) == 2 and report.counts["items_embedded"] == 2 and report.counts["items_reused"] == 4
    records, after, _ = _content(root)
    kept = {r.id for r in records if r.window not in touched}
    assert len(kept) == 4 and all(np.array_equal(after[i], before[i]) for i in kept)
    assert not {r.id for r in records if r.window in touched} & set(before)


def test_killed_driver_resumes_from_its_batches(
    cluster: str, archive: list[Path], single: Path, tiny_arch_path: Path, tmp_path: Path
) -> None:
    """SIGKILL a `build --ray ADDRESS` driver after 3 batches; the next update reuses them and finishes."""
    root, log = tmp_path / "store", tmp_path / "driver.log"
    build = [
        sys.executable, "-m", "posapl.cli", "index", "build", "--images", *map(str, archive), "--out", str(root),
        "--arch", str(tiny_arch_path), "--pretrained", "random", "--preset", "rsicd", "--device", "cpu",
        "--max-pixels", str(MAX_PIXELS), "--batch-size", str(BATCH), "--no-progress", "--ray", cluster,
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POSAPL_", "RAY_ADDRESS"))}
    env["HF_HUB_OFFLINE"] = "1"
    with open(log, "wb") as output:
        driver = subprocess.Popen(build, env={**env, "POSAPL_FAULT_PAUSE_AT": "batch:3"}, stdout=output, stderr=output)
    deadline = time.monotonic() + 240
    while not (root / PAUSE_MARKER).is_file():
        if driver.poll() is not None:
            pytest.fail(f"the driver exited ({driver.returncode}) early: {log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            driver.kill()
            pytest.fail("the cluster build never reached batch 3")
        time.sleep(0.1)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    assert IndexStore(root).current_version() is None
    done = _batches(root)
    assert len(done) == 3
    finished = sum(_items_in(path) for path in done)
    assert finished == 3 * BATCH

    report = run_update(root, _settings(root, tiny_arch_path, None, ray_address=cluster))
    assert report.status == "published" and report.version == 1
    assert report.counts["resumed"] == finished, "finished batches are reused, not embedded again"
    assert report.counts["items_embedded"] == 80 and report.counts["skipped"] == 5
    assert_same_store(root, single)


def test_killed_actor_is_replaced_and_the_version_is_exact(
    cluster: str,
    archive: list[Path],
    single: Path,
    tiny_arch_path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SIGKILL the embedding actor while the driver holds batch 1 of 11: Ray restarts it and retries its work."""
    killed: list[int] = []
    replaced: list[int] = []

    def kill_an_actor(root: Path, settings):
        def after(stage: str) -> None:
            if stage != "batch:1":
                return
            pids = _actor_pids()
            assert pids, "no embedding actor found while the run is in progress"
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])
            deadline = time.monotonic() + 120
            while not set(_actor_pids()) - {pids[0]} and time.monotonic() < deadline:
                time.sleep(0.1)
            replaced.extend(set(_actor_pids()) - {pids[0]})

        return after

    monkeypatch.setattr(index.job, "_pause_hook", kill_an_actor)
    root = tmp_path / "store"
    settings = _settings(root, tiny_arch_path, archive, ray_address=cluster)
    report = run_update(root, settings, settings.store_config())
    assert len(killed) == 1 and replaced, "Ray started a replacement actor while the run went on"
    assert report.status == "published" and report.counts["items_embedded"] == 80
    assert_same_store(root, single)
