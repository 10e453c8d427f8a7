"""A nightly rewrite of part of a scene re-embeds only the windows it touched: the others keep their vector (byte
for byte) and their id, the report counts files and items apart, and no ROOT/work folder is left behind."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from index_helpers import anchored_scene, intersecting, rewrite_region, tiny_settings, write_uint16_scene

import index.embed
import index.reuse
from index.job import run_update
from index.layout import LAST_RUN, WORK, item_id
from index.report import summary
from index.reuse import read_digests, unique_ids
from index.store import ImageRecord, open_version
from index.tiles import tile_windows

HEIGHT, WIDTH, TILE = 512, 640, 128
REGION = (220, 100, 70, 60)  # x, y, width, height: 1.3 % of the scene, across six overlapping windows


def _vectors(root: Path) -> dict[tuple[int, int, int, int], tuple[int, bytes]]:
    """window -> (item id, vector bytes) of the live version."""
    with open_version(root) as version:
        records = version.all_images()
        vectors = version.image_vectors([r.id for r in records])
    return {r.window: (r.id, vector.tobytes()) for r, vector in zip(records, vectors)}


def _clone(store: Path, archive: Path, target: Path) -> Path:
    """A copy of `store` whose source folder is a copy of `archive`, to change files without touching others."""
    shutil.copytree(archive, target / "archive")
    shutil.copytree(store, target / "store")
    config = json.loads((target / "store" / "config.json").read_text())
    config["sources"] = [str(target / "archive")]
    (target / "store" / "config.json").write_text(json.dumps(config))
    return target / "store"


@pytest.fixture(scope="module")
def nightly(tmp_path_factory: pytest.TempPathFactory, tiny_arch_path: Path) -> SimpleNamespace:
    """Build a 4-band uint16 scene, keep a copy of the store, rewrite 1.3 % of the scene and update, counting
    the windows the model embeds; then build the rewritten scene from scratch as the reference."""
    tmp = tmp_path_factory.mktemp("reuse")
    archive = tmp / "archive"
    archive.mkdir()
    data = anchored_scene(HEIGHT, WIDTH, seed=1)
    write_uint16_scene(archive / "scene.tif", data)
    root = tmp / "store"
    settings = tiny_settings(root, tiny_arch_path, [archive], tile_sizes=[TILE])
    run_update(root, settings, settings.store_config())
    built = shutil.copytree(root, tmp / "built")
    pristine = shutil.copytree(archive, tmp / "pristine")
    before = _vectors(root)
    work_after_build = (root / WORK).exists()

    rewrite_region(archive / "scene.tif", data, REGION, seed=2)
    encoded: list[int] = []
    encode = index.embed.encode_images

    def counting(model, pixels, batch_size):
        encoded.append(len(pixels))
        return encode(model, pixels, batch_size)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(index.embed, "encode_images", counting)
        report = run_update(root, tiny_settings(root, tiny_arch_path))
    fresh = tmp / "fresh"
    settings = tiny_settings(fresh, tiny_arch_path, [archive], tile_sizes=[TILE])
    run_update(fresh, settings, settings.store_config())
    return SimpleNamespace(
        root=root, built=built, pristine=pristine, before=before, after=_vectors(root), reference=_vectors(fresh),
        report=report, encoded=sum(encoded), work_after_build=work_after_build,
    )


def test_only_windows_touching_the_rewrite_are_embedded(nightly: SimpleNamespace) -> None:
    windows = [window for window, _ in tile_windows(WIDTH, HEIGHT, [TILE], 0.25)]
    touched = intersecting(windows, REGION)
    assert len(windows) == 35 and len(touched) == 6
    assert nightly.encoded == 6, "the model saw exactly the six touched windows"
    counts = nightly.report.counts
    assert counts["items_embedded"] == 6 and counts["items_reused"] == 29 and counts["items_removed"] == 0
    assert (counts["files_changed"], counts["files_new"], counts["files_removed"]) == (1, 0, 0)
    assert set(nightly.after) == set(nightly.before) == set(windows)
    changed = {w for w in windows if nightly.after[w] != nightly.before[w]}
    assert changed == touched
    for window in set(windows) - touched:
        assert nightly.after[window] == nightly.before[window], "same id, byte-identical vector"
    for window in touched:
        assert nightly.after[window][0] != nightly.before[window][0], "a changed window is a new item"


def test_every_window_matches_a_fresh_build_of_the_new_scene(nightly: SimpleNamespace) -> None:
    """Reused and re-embedded windows alike hold the vector of the new pixels; searching with a changed tile's
    fresh vector finds that tile, never its old content."""
    with open_version(nightly.root) as version:
        for window, (_, reference) in nightly.reference.items():
            image_id, stored = nightly.after[window]
            expected = np.frombuffer(reference, dtype=np.float32)
            assert np.allclose(np.frombuffer(stored, dtype=np.float32), expected, atol=1e-5), window
        for window in intersecting(list(nightly.after), REGION):
            query = np.frombuffer(nightly.reference[window][1], dtype=np.float32)[None]
            scores, ids = version.search_images(query, 1)
            assert ids[0, 0] == nightly.after[window][0] and scores[0, 0] >= 0.999
            with pytest.raises(KeyError):
                version.image(nightly.before[window][0])
        digests = read_digests(version)
        assert set(digests) == {image_id for image_id, _ in nightly.after.values()}


def test_the_summary_and_last_run_name_file_and_item_counts(nightly: SimpleNamespace) -> None:
    line = summary(nightly.report)
    assert "files: 1 changed, 0 new, 0 removed; items: 6 embedded, 29 reused, 0 removed" in line
    last = json.loads((nightly.root / LAST_RUN).read_text())
    assert last["counts"]["items_reused"] == 29 and last["counts"]["files_changed"] == 1


def test_no_work_folder_is_left_behind(nightly: SimpleNamespace) -> None:
    assert not nightly.work_after_build and not (nightly.root / WORK).exists()


def test_a_rewrite_that_moves_the_stretch_re_embeds_every_window(
    nightly: SimpleNamespace, tmp_path: Path, tiny_arch_path: Path
) -> None:
    """The digest is of the 8-bit window the model sees: bright new pixels over 3 % of the scene move its 98th
    percentile, so every window's pixels change even where the raw values did not."""
    root = _clone(nightly.built, nightly.pristine, tmp_path)
    scene = tmp_path / "archive" / "scene.tif"
    data = anchored_scene(HEIGHT, WIDTH, seed=1)
    data[:, 0:100, 0:100] = 60000
    write_uint16_scene(scene, data)
    report = run_update(root, tiny_settings(root, tiny_arch_path))
    assert report.counts["items_embedded"] == 35 and report.counts["items_reused"] == 0
    after = _vectors(root)
    assert all(after[w][0] != nightly.before[w][0] for w in after)


def test_a_store_without_digests_embeds_a_changed_scene_whole_once(
    tmp_path: Path, tiny_arch_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A version written before pixel digests is read as it is; its changed scene is embedded whole, and the
    version that publishes carries digests, so the next rewrite reuses."""
    archive = tmp_path / "archive"
    archive.mkdir()
    data = anchored_scene(256, 384, seed=3)
    write_uint16_scene(archive / "small.tif", data)
    root = tmp_path / "store"
    settings = tiny_settings(root, tiny_arch_path, [archive], tile_sizes=[TILE], tile_overlap=0.0)
    with monkeypatch.context() as old:
        old.setattr(index.reuse, "create_table", lambda db: None)
        old.setattr(index.reuse, "write_digests", lambda db, digests: None)
        run_update(root, settings, settings.store_config())
    with open_version(root) as version:
        assert read_digests(version) == {}
    data = rewrite_region(archive / "small.tif", data, (10, 10, 20, 20), seed=4)
    first = run_update(root, tiny_settings(root, tiny_arch_path))
    assert first.counts["items_embedded"] == 6 and first.counts["items_reused"] == 0
    rewrite_region(archive / "small.tif", data, (10, 10, 20, 20), seed=5)
    second = run_update(root, tiny_settings(root, tiny_arch_path))
    assert second.counts["items_embedded"] == 1 and second.counts["items_reused"] == 5
    again = run_update(root, tiny_settings(root, tiny_arch_path))
    assert again.status == "unchanged" and again.version == second.version, "reused items equal the live ones"


def _record(image_id: int, path: str) -> ImageRecord:
    return ImageRecord(image_id, 0, path, "ab" * 32, 1, 8, 8, 0.0, 3, "uint8", "", None, None, (0, 0, 8, 8), 8)


def test_an_id_kept_by_a_reused_window_wins_over_a_fresh_item() -> None:
    """A reused window keeps the id made from its file's earlier content; when that content comes back at
    another path, its fresh item must not take the same id."""
    kept = item_id("ab" * 32, (0, 0, 8, 8), 8)
    records = unique_ids([_record(kept, "rewritten.tif"), _record(kept, "restored.tif")], fresh={1})
    assert records[0].id == kept and records[1].id != kept and records[1].path == "restored.tif"
    assert unique_ids([_record(kept, "a.tif")], fresh={0})[0].id == kept


def test_a_window_found_unchanged_resumes_only_against_the_same_live_item(tmp_path: Path) -> None:
    """A killed run's checkpoint says which windows matched the live version; the next run skips them only
    while the live item it compares with still has that digest."""
    log = index.embed.WorkLog(tmp_path / "work" / "model")
    log.append(["a@0,0,8,8:8"], np.ones((1, 4), np.float32), [None], {}, [], {"a@0,0,8,8:8": "d1", "a@8,0,8,8:8": "d2"},
               ["a@8,0,8,8:8"])  # fmt: skip
    state = log.load(4)
    assert state.done("a@0,0,8,8:8") and state.digests["a@0,0,8,8:8"] == "d1"
    assert state.reusable("a@8,0,8,8:8", "d2") and state.done("a@8,0,8,8:8", "d2")
    assert not state.done("a@8,0,8,8:8", "other") and not state.done("a@8,0,8,8:8")
    log.clear()
    assert not (tmp_path / "work").exists()
