"""Nightly update semantics: new files in, bad files reported, deleted files out, no-op runs publish nothing,
model changes rebuild, tampered versions are refused, rollback and retention, one writer at a time."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from index_helpers import RSICD_TEST, copy_images, rsicd_names, tiny_settings, write_bad_files, write_geotiff

from index import profiles as index_profiles
from index.job import run_update
from index.layout import (
    CURRENT,
    FORMAT,
    IMAGES_INDEX,
    LAST_RUN,
    MANIFEST,
    OVERVIEW_CACHE,
    PREVIOUS_FORMAT,
    VECTOR_FILES,
    content_id,
    file_sha256,
)
from index.profiles import compute_profiles
from index.publish import StoreBusyError, prune, rollback, store_lock
from index.settings import StoreConfig
from index.store import IndexIntegrityError, IndexStore, open_version
from posapl.cli import main as posapl_main
from posapl.rerank import PROFILE_HEADER


@pytest.fixture
def small_store(tmp_path: Path, tiny_arch_path: Path) -> tuple[Path, Path]:
    """A store over 6 RSICD images with a 5-caption bank; returns (root, image folder)."""
    images = tmp_path / "archive"
    copy_images(rsicd_names(6), images)
    bank = tmp_path / "bank.txt"
    bank.write_text(
        "many planes are parked at the airport .\na river runs through green farmland .\n"
        "a bridge over the river .\nsome buildings near a playground .\ndense forest .\n"
    )
    root = tmp_path / "store"
    settings = tiny_settings(root, tiny_arch_path, [images], captions=[bank], max_pixels=4_000_000)
    report = run_update(root, settings, settings.store_config())
    assert report.status == "published" and report.counts["images"] == 6
    return root, images


def _sha_set(root: Path) -> set[str]:
    with open_version(root) as version:
        return {r.sha256 for r in version.all_images()}


def test_update_adds_new_skips_bad_and_removes_deleted(small_store, tiny_arch_path: Path) -> None:
    root, images = small_store
    added = copy_images(rsicd_names(4, start=100), images / "new" / "deeper")
    write_geotiff(images / "new" / "scene.tif")
    reasons = write_bad_files(images / "incoming")
    removed = sorted(images.glob("*.jpg"))[:2]
    for path in removed:
        path.unlink()

    report = run_update(root, tiny_settings(root, tiny_arch_path))
    assert report.status == "published" and report.version == 2
    counts = report.counts
    assert counts["items_embedded"] == counts["files_new"] == 5 and counts["files_removed"] == 2
    assert counts["items_removed"] == 2 and counts["files_changed"] == counts["items_reused"] == 0
    assert counts["skipped"] == len(reasons)
    expected = {file_sha256(p) for p in images.rglob("*") if p.is_file() and p.parent.name != "incoming"}
    assert _sha_set(root) == expected

    with open_version(root) as version:
        assert version.manifest.counts["skipped"] == len(reasons)
        skipped = dict(version.skipped())
        for name, word in reasons.items():
            assert word in skipped[str(images / "incoming" / name)]
        geo = version.image(content_id(file_sha256(images / "new" / "scene.tif")))
        assert geo.crs == "EPSG:32633" and geo.bbox == pytest.approx((500000.0, 3999520.0, 500640.0, 4000000.0))
        assert geo.bands == 4 and geo.dtype == "uint16" and "percentiles" in geo.preprocessing
        assert geo.path == "new/scene.tif" and version.image_path(geo.id) == images / "new" / "scene.tif"
        new_ids = [content_id(file_sha256(p)) for p in added]
        _, found = version.search_images(version.image_vectors(new_ids), 1)
        assert found[:, 0].tolist() == new_ids
    last_run = json.loads((root / LAST_RUN).read_text())
    assert {item["path"] for item in last_run["skipped"]} == {str(images / "incoming" / n) for n in reasons}


def test_second_update_publishes_nothing(small_store, tiny_arch_path: Path) -> None:
    root, images = small_store
    copy_images(rsicd_names(2, start=50), images)
    (images / "empty.png").write_bytes(b"")
    assert run_update(root, tiny_settings(root, tiny_arch_path)).version == 2
    manifest_before = (root / "versions" / "2" / MANIFEST).read_bytes()
    again = run_update(root, tiny_settings(root, tiny_arch_path))
    assert again.status == "unchanged" and again.version == 2
    assert IndexStore(root).versions() == [1, 2] and (root / CURRENT).read_text() == "2\n"
    assert (root / "versions" / "2" / MANIFEST).read_bytes() == manifest_before


def test_duplicate_content_is_indexed_once(small_store, tiny_arch_path: Path) -> None:
    root, images = small_store
    first = sorted(images.glob("*.jpg"))[0]
    shutil.copy2(first, images / "copy-of-first.jpg")
    report = run_update(root, tiny_settings(root, tiny_arch_path))
    assert report.status == "unchanged" and report.counts["duplicates"] == 1


def test_keep_missing_keeps_entries_of_deleted_files(tmp_path: Path, tiny_arch_path: Path) -> None:
    images = tmp_path / "archive"
    copy_images(rsicd_names(4), images)
    root = tmp_path / "store"
    settings = tiny_settings(root, tiny_arch_path, [images], keep_missing=True)
    run_update(root, settings, settings.store_config())
    before = _sha_set(root)
    sorted(images.glob("*.jpg"))[0].unlink()
    report = run_update(root, tiny_settings(root, tiny_arch_path))
    assert report.counts["missing_kept"] == 1 and _sha_set(root) == before


def test_model_change_forces_a_full_rebuild(small_store, tiny_arch_path: Path) -> None:
    root, _ = small_store
    with open_version(root) as version:
        old_fingerprint = version.manifest.fingerprint
    config = StoreConfig.load(root)
    config.model_copy(update={"preset": "rsitmd"}).save(root)
    report = run_update(root, tiny_settings(root, tiny_arch_path))
    assert report.status == "published" and "model changed" in report.full_rebuild
    assert report.counts["items_embedded"] == 6 and report.counts["resumed"] == 0
    with open_version(root) as version:
        assert version.manifest.fingerprint != old_fingerprint


def test_profile_size_change_republishes_with_whole_profiles(small_store, tiny_arch_path: Path) -> None:
    """profile_points = 0 stores each item's whole sorted profile: every caption for an image, every image
    for a caption; changing it publishes a new version without re-embedding anything."""
    root, _ = small_store
    with open_version(root) as version:
        assert version.manifest.raw["profiles"]["points"] == 64
    StoreConfig.load(root).model_copy(update={"profile_points": 0}).save(root)
    report = run_update(root, tiny_settings(root, tiny_arch_path))
    assert report.status == "published" and report.counts["items_embedded"] == 0 and report.full_rebuild is None
    with open_version(root) as version:
        images, captions = version.image_ids(), version.caption_ids()
        assert version.manifest.raw["profiles"]["points"] == 0
        image_profiles = version.image_profiles(images)
        assert image_profiles.shape == (6, PROFILE_HEADER + 5)
        assert version.caption_profiles(captions).shape == (5, PROFILE_HEADER + 6)
        bank = version.caption_index.reconstruct_batch(captions)
        whole = -np.sort(-(version.image_vectors(images) @ bank.T), axis=1)
        np.testing.assert_allclose(image_profiles[:, PROFILE_HEADER:], whole, atol=1e-6)
    assert run_update(root, tiny_settings(root, tiny_arch_path)).status == "unchanged"


def test_update_computes_profiles_only_for_new_images_while_the_bank_is_unchanged(
    small_store, tiny_arch_path: Path, monkeypatch
) -> None:
    """Adding 2 images to 6: only the 2 get image profiles computed (the 6 are copied from the live version),
    captions are re-profiled against all 8, and every stored row equals a fresh computation. A changed
    caption bank recomputes every image."""
    root, images = small_store
    profiled: list[tuple[int, int]] = []
    real = index_profiles.build_profiles

    def counting(items, bank, **kwargs):
        profiled.append((len(items), len(bank)))
        return real(items, bank, **kwargs)

    monkeypatch.setattr(index_profiles, "build_profiles", counting)
    copy_images(rsicd_names(2, start=50), images)
    assert run_update(root, tiny_settings(root, tiny_arch_path)).version == 2
    assert profiled == [(2, 5), (5, 8)]
    with open_version(root) as version:
        ids, bank = version.image_ids(), version.caption_index.reconstruct_batch(version.caption_ids())
        fresh = real(version.image_vectors(ids), bank)
        np.testing.assert_allclose(version.image_profiles(ids), fresh, rtol=1e-6, atol=1e-6)

    profiled.clear()
    bank_file = StoreConfig.load(root).captions[0]
    bank_file.write_text(bank_file.read_text() + "a harbour with many boats .\n")
    assert run_update(root, tiny_settings(root, tiny_arch_path)).version == 3
    assert profiled == [(8, 6), (6, 8)]


def test_whole_profiles_too_large_for_memory_are_refused() -> None:
    with pytest.raises(ValueError, match="set profile_points"):
        compute_profiles(np.arange(100_000), np.zeros((1, 4)), np.arange(100_000), np.zeros((1, 4)), points=0)


def test_tampered_version_is_refused_and_the_old_one_stays_readable(small_store, tiny_arch_path: Path) -> None:
    root, images = small_store
    copy_images(rsicd_names(1, start=300), images)
    run_update(root, tiny_settings(root, tiny_arch_path))
    served = open_version(root, 1)
    target = root / "versions" / "2" / IMAGES_INDEX
    data = bytearray(target.read_bytes())
    data[-5] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(IndexIntegrityError, match="sha256"):
        open_version(root)
    assert served.search_images(served.image_vectors(served.image_ids()[:1]), 1)[1][0, 0] == served.image_ids()[0]
    served.close()

    manifest_path = root / "versions" / "1" / MANIFEST
    manifest = json.loads(manifest_path.read_text())
    manifest["counts"]["images"] += 1
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(IndexIntegrityError, match="manifest counts"):
        open_version(root, 1)

    report = run_update(root, tiny_settings(root, tiny_arch_path))
    assert "failed its check" in report.full_rebuild and report.version == 3
    assert open_version(root).manifest.counts["images"] == 7


def test_rollback_goes_back_one_and_retention_keeps_three(small_store, tiny_arch_path: Path) -> None:
    root, images = small_store
    for start in (200, 210, 220):
        copy_images(rsicd_names(1, start=start), images)
        run_update(root, tiny_settings(root, tiny_arch_path))
    store = IndexStore(root)
    assert store.versions() == [2, 3, 4] and store.current_version() == 4
    assert posapl_main(["index", "rollback", "--root", str(root)]) == 0
    assert store.current_version() == 3
    assert rollback(root) == 2
    with pytest.raises(IndexIntegrityError, match="no intact version older"):
        rollback(root)
    copy_images(rsicd_names(1, start=230), images)
    assert run_update(root, tiny_settings(root, tiny_arch_path)).version == 5
    assert store.current_version() == 5 and 5 in store.versions() and len(store.versions()) == 3


def test_one_writer_at_a_time(small_store, tiny_arch_path: Path) -> None:
    root, _ = small_store
    with store_lock(root):
        with pytest.raises(StoreBusyError, match="another index job"):
            run_update(root, tiny_settings(root, tiny_arch_path))
        assert posapl_main(["index", "update", "--root", str(root), "--no-progress", "--num-workers", "0"]) == 3


def test_update_of_a_missing_store_fails_with_exit_code_1(tmp_path: Path, capsys) -> None:
    assert posapl_main(["index", "update", "--root", str(tmp_path / "nothing")]) == 1
    assert "posapl index build" in capsys.readouterr().err


def test_ivf_index_finds_stored_vectors(tmp_path: Path, tiny_arch_path: Path) -> None:
    images = tmp_path / "archive"
    copy_images(rsicd_names(90), images)
    root = tmp_path / "store"
    settings = tiny_settings(root, tiny_arch_path, [images], index_kind="ivf", nlist=2, nprobe=2, batch_size=45)
    run_update(root, settings, settings.store_config())
    with open_version(root) as version:
        assert version.manifest.index["kind"] == "ivf" and version.manifest.index["nlist"] == 2
        ids = version.image_ids()
        _, found = version.search_images(version.image_vectors(ids), 1)
        assert np.array_equal(found[:, 0], ids)
    sorted(images.glob("*.jpg"))[0].unlink()
    assert run_update(root, tiny_settings(root, tiny_arch_path)).counts["images"] == 89
    assert os.path.isdir(root / "versions" / "2")


def test_worker_processes_give_the_same_vectors(tmp_path: Path, tiny_arch_path: Path) -> None:
    images = tmp_path / "archive"
    copy_images(rsicd_names(8, start=700), images)
    vectors = []
    for workers in (0, 2):
        root = tmp_path / f"store-{workers}"
        settings = tiny_settings(root, tiny_arch_path, [images], num_workers=workers, batch_size=3)
        run_update(root, settings, settings.store_config())
        with open_version(root) as version:
            ids = np.sort(version.image_ids())
            vectors.append((ids, version.image_vectors(ids)))
    assert np.array_equal(vectors[0][0], vectors[1][0])
    assert np.allclose(vectors[0][1], vectors[1][1], atol=1e-6)


def test_build_with_a_missing_folder_writes_nothing(tmp_path: Path, tiny_arch_path: Path, capsys) -> None:
    root = tmp_path / "store"
    code = posapl_main(
        [
            "index",
            "build",
            "--images",
            str(tmp_path / "nope"),
            "--out",
            str(root),
            "--pretrained",
            "random",
            "--arch",
            str(tiny_arch_path),
            "--no-progress",
        ]
    )
    assert code == 1 and "not found" in capsys.readouterr().err
    assert not (root / "config.json").exists()


def test_index_vectors_match_the_shared_eval_transform(tiny_model, data_dir: Path) -> None:
    """The batched uint8 pipeline must embed exactly as posapl.preprocess.eval_transform does (the service's)."""
    import torch

    from index.decode import decode_image
    from index.embed import ArchiveImages, WorkItem, normalise
    from posapl.encode import encode_images
    from posapl.preprocess import eval_transform

    paths = [RSICD_TEST / rsicd_names(1)[0], data_dir / "ucm" / "images" / "1000.tif"]
    dataset = ArchiveImages([WorkItem("x", p) for p in paths], tiny_model.image_size, 10**7)
    pixels = [torch.from_numpy(dataset[i].pixels.copy()).permute(2, 0, 1) for i in range(len(paths))]
    ours = normalise(torch.stack(pixels), tiny_model.device)
    transform = eval_transform(tiny_model.image_size)
    reference = torch.stack([transform(decode_image(p, 10**7).image) for p in paths])
    assert torch.allclose(ours, reference, atol=1e-5)
    assert np.allclose(encode_images(tiny_model, ours), encode_images(tiny_model, reference), atol=1e-5)


def _clone_version(root: Path, source: int, number: int, corrupt: bool = False) -> None:
    """A copy of version `source` published under `number` (its manifest renumbered); `corrupt` flips a byte
    of its image index so it fails its sha256 check."""
    target = root / "versions" / str(number)
    shutil.copytree(root / "versions" / str(source), target)
    manifest = json.loads((target / MANIFEST).read_text())
    manifest["version"] = number
    (target / MANIFEST).write_text(json.dumps(manifest))
    if corrupt:
        data = bytearray((target / IMAGES_INDEX).read_bytes())
        data[-5] ^= 0xFF
        (target / IMAGES_INDEX).write_bytes(bytes(data))


def test_retention_keeps_the_intact_version_a_server_serves_when_current_is_corrupt(
    small_store, tiny_arch_path: Path
) -> None:
    """The outside probe: CURRENT named a corrupt v8 (refused by the server, which kept serving v7), a later
    broken v9 lay beside it, and the next update's retention kept the corrupt versions and deleted v7."""
    root, images = small_store
    for number in range(2, 8):
        _clone_version(root, 1, number)
    _clone_version(root, 1, 8, corrupt=True)
    _clone_version(root, 1, 9, corrupt=True)
    (root / CURRENT).write_text("8\n")
    with pytest.raises(IndexIntegrityError):
        open_version(root)
    copy_images(rsicd_names(1, start=300), images)
    report = run_update(root, tiny_settings(root, tiny_arch_path))
    assert report.status == "published" and report.version == 10
    store = IndexStore(root)
    # the three newest intact versions (10, 7, 6) are kept; corrupt 8 and 9 do not count toward them
    assert store.versions() == [6, 7, 8, 9, 10] and store.current_version() == 10
    with open_version(root, 7) as served:
        assert served.manifest.counts["images"] == 6


def test_retention_always_keeps_the_last_intact_version_before_current(small_store, tiny_arch_path: Path) -> None:
    root, _ = small_store
    for number in (2, 3):
        _clone_version(root, 1, number)
    _clone_version(root, 1, 4, corrupt=True)
    (root / CURRENT).write_text("4\n")
    for number in (1, 2, 3):  # the service's cached scene overviews of each version
        (root / OVERVIEW_CACHE / str(number)).mkdir(parents=True)
        (root / OVERVIEW_CACHE / str(number) / "7.png").write_bytes(b"png")
    assert prune(root, 1) == [1, 2]  # keep=1 counts intact v3, which is also the one before CURRENT
    assert IndexStore(root).versions() == [3, 4]
    assert sorted(p.name for p in (root / OVERVIEW_CACHE).iterdir()) == ["3"]  # removed with their versions
    (root / CURRENT).unlink()
    _clone_version(root, 3, 5, corrupt=True)
    shutil.rmtree(root / "versions" / "3")
    assert prune(root, 1) == []  # nothing intact and nothing live: delete nothing


def _as_previous_format(version_dir: Path) -> None:
    """Turn a version into what the release before the vector files wrote: no image_ids.npy/image_vectors.npy,
    format posapl-index/2 (the other files of that format are the same)."""
    manifest = json.loads((version_dir / MANIFEST).read_text())
    for name in VECTOR_FILES:
        (version_dir / name).unlink()
        del manifest["files"][name]
    manifest["format"] = PREVIOUS_FORMAT
    (version_dir / MANIFEST).write_text(json.dumps(manifest))


def test_a_store_of_the_previous_format_serves_and_its_update_reuses_its_vectors(
    small_store, tiny_arch_path: Path
) -> None:
    root, images = small_store
    with open_version(root) as version:
        ids, vectors = (np.array(a) for a in version.all_image_vectors())
        expected = version.search_images(vectors[:3], 4)
    _as_previous_format(root / "versions" / "1")

    with open_version(root) as old:  # readers still open it: the vectors come back from the FAISS index
        assert old.manifest.format == PREVIOUS_FORMAT
        assert np.array_equal(old.all_image_vectors()[0], ids)
        np.testing.assert_array_equal(old.all_image_vectors()[1], vectors)
        for got, want in zip(old.search_images(vectors[:3], 4), expected):
            np.testing.assert_array_equal(got, want)

    copy_images(rsicd_names(1, start=60), images)
    report = run_update(root, tiny_settings(root, tiny_arch_path))
    assert report.status == "published" and report.counts["items_embedded"] == 1  # the 6 old ones are reused
    with open_version(root) as upgraded:
        assert upgraded.manifest.format == FORMAT and all(name in upgraded.manifest.files for name in VECTOR_FILES)
        np.testing.assert_array_equal(upgraded.image_vectors(ids), vectors)
