"""The run's image vectors live in a spool file on disk, not in RAM, and the version they give is the one an
in-RAM array gave (index.vector_spool)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import faiss
import numpy as np
import pytest
from index_helpers import copy_images, rsicd_names, tiny_settings

from index import job
from index.content import version_content
from index.embed import WorkLog
from index.job import run_update
from index.layout import STAGING_PREFIX
from index.publish import VersionContent
from index.store import open_version
from index.vector_spool import VectorSpool


def test_spool_maps_what_was_appended_across_buffer_flushes(tmp_path: Path) -> None:
    rows = np.random.default_rng(3).standard_normal((11, 5)).astype(np.float32)
    spool = VectorSpool(tmp_path / "staging-x", 5, buffer_rows=4)
    for row in rows:
        spool.append(row)
    assert len(spool) == 11
    mapped = spool.finish()
    assert isinstance(mapped, np.memmap) and Path(mapped.filename) == spool.path
    assert spool.path.stat().st_size == rows.nbytes and not mapped.flags.writeable
    np.testing.assert_array_equal(mapped, rows)
    with pytest.raises(ValueError, match="finished"):
        spool.append(rows[0])
    spool.remove()
    assert not (tmp_path / "staging-x").exists()


def test_an_empty_spool_gives_an_empty_array(tmp_path: Path) -> None:
    spool = VectorSpool(tmp_path / "staging-y", 7)
    assert spool.finish().shape == (0, 7)
    spool.remove()


def test_checkpoint_vectors_are_read_from_the_batch_files_when_asked_for(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    log = WorkLog(tmp_path / "work")
    batches = [rng.standard_normal((3, 4)).astype(np.float32) for _ in range(2)]
    paths = [log.append([f"b{b}-{i}" for i in range(3)], vectors, [None] * 3, {}) for b, vectors in enumerate(batches)]
    state = log.load(4)
    assert sorted(state.vectors) == sorted(f"b{b}-{i}" for b in range(2) for i in range(3))
    assert "b1-2" in state.vectors and "b2-0" not in state.vectors
    paths[1].write_bytes(b"")  # the second batch is gone after loading: its rows can no longer be read
    np.testing.assert_array_equal(state.vectors["b0-1"], batches[0][1])
    with pytest.raises(EOFError):
        state.vectors["b1-0"]


@dataclass
class Seen:
    """What each run's version_content was given and what the old, in-RAM path made of the same plan."""

    plans: list[np.ndarray] = field(default_factory=list)  # plan.vectors as handed over
    spool_files: list[Path] = field(default_factory=list)
    new: list[VersionContent] = field(default_factory=list)
    old: list[VersionContent] = field(default_factory=list)


def _index_bytes(index: faiss.Index) -> bytes:
    return faiss.serialize_index(index).tobytes()


@pytest.fixture(scope="module")
def spooled_store(tmp_path_factory: pytest.TempPathFactory, tiny_arch_path: Path) -> tuple[Path, Seen]:
    """A build of 6 RSICD images and an update adding 2 (so live rows and image profiles are reused), each
    version made from the spool while the same plan is also run through the old path: its rows stacked into
    one in-RAM array, as version_content did before the spool."""
    base = tmp_path_factory.mktemp("spool")
    images = base / "archive"
    copy_images(rsicd_names(6), images)
    bank = base / "bank.txt"
    bank.write_text("many planes are parked at the airport .\na river runs through green farmland .\ndense forest .\n")
    root = base / "store"
    seen = Seen()

    def both_paths(model, config, plan, *args, **kwargs) -> VersionContent:
        seen.plans.append(plan.vectors)
        seen.spool_files.append(Path(plan.vectors.filename))
        assert seen.spool_files[-1].is_file()  # on disk while the version is built
        in_ram = replace(plan, vectors=np.stack([np.array(row) for row in plan.vectors]))
        seen.old.append(version_content(model, config, in_ram, *args, **kwargs))
        seen.new.append(version_content(model, config, plan, *args, **kwargs))
        return seen.new[-1]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(job, "version_content", both_paths)
        settings = tiny_settings(root, tiny_arch_path, [images], captions=[bank], max_pixels=4_000_000)
        assert run_update(root, settings, settings.store_config()).version == 1
        copy_images(rsicd_names(2, start=40), images)
        report = run_update(root, tiny_settings(root, tiny_arch_path))
        assert report.version == 2 and report.counts["items_embedded"] == 2
    return root, seen


def test_the_plan_vectors_are_a_memory_map_of_a_staging_file(spooled_store) -> None:
    root, seen = spooled_store
    assert [len(vectors) for vectors in seen.plans] == [6, 8]
    for vectors, path, content in zip(seen.plans, seen.spool_files, seen.new, strict=True):
        assert isinstance(vectors, np.memmap) and vectors.dtype == np.float32
        assert path.parent.parent == root and path.parent.name.startswith(STAGING_PREFIX)
        assert content.image_vectors is vectors  # handed to the index build, profiles and publish unread
    assert not list(root.glob(f"{STAGING_PREFIX}*"))  # each run removed its spool after publishing


def test_a_version_from_the_spool_equals_the_in_ram_build(spooled_store) -> None:
    root, seen = spooled_store
    for old, new in zip(seen.old, seen.new, strict=True):
        np.testing.assert_array_equal(np.asarray(new.image_vectors), old.image_vectors)
        assert _index_bytes(new.image_index) == _index_bytes(old.image_index)
        assert _index_bytes(new.caption_index) == _index_bytes(old.caption_index)
        assert new.profiles.keys() == old.profiles.keys()
        for name, array in old.profiles.items():
            np.testing.assert_array_equal(new.profiles[name], array)
        assert new.manifest == old.manifest and new.image_records == old.image_records
    with open_version(root) as version:
        old = seen.old[-1]
        ids = np.array([r.id for r in old.image_records], dtype=np.int64)
        np.testing.assert_array_equal(version.image_vectors(ids), old.image_vectors)
        published = version.search_images(old.image_vectors, 5)
        in_ram = old.image_index.search(old.image_vectors, 5)
        np.testing.assert_array_equal(published[1], in_ram[1])
        np.testing.assert_array_equal(published[0], in_ram[0])


def test_a_failed_publish_removes_the_spool(tmp_path: Path, tiny_arch_path: Path, monkeypatch) -> None:
    images = tmp_path / "archive"
    copy_images(rsicd_names(2), images)
    root = tmp_path / "store"

    def fail(*args, **kwargs) -> int:
        assert list(root.glob(f"{STAGING_PREFIX}plan-*"))  # the spool exists up to publishing
        raise OSError("disk full")

    monkeypatch.setattr(job, "publish", fail)
    settings = tiny_settings(root, tiny_arch_path, [images])
    with pytest.raises(OSError, match="disk full"):
        run_update(root, settings, settings.store_config())
    assert not list(root.glob(f"{STAGING_PREFIX}*"))
