"""The index verbs read the store root the way the service does, and a store can take a new image folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from index_helpers import copy_images, rsicd_names, tiny_settings

from index.job import run_update
from index.settings import IndexSettings, StoreConfig
from index.store import open_version
from posapl.cli import main as posapl_main
from service.settings import ServiceSettings


@pytest.fixture
def store(tmp_path: Path, tiny_arch_path: Path) -> Path:
    images = tmp_path / "archive"
    copy_images(rsicd_names(3), images)
    root = tmp_path / "store"
    settings = tiny_settings(root, tiny_arch_path, [images])
    run_update(root, settings, settings.store_config())
    return root


def test_index_root_has_one_default_and_one_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("POSAPL_INDEX_ROOT", raising=False)
    assert IndexSettings().root == ServiceSettings().index_root == Path("data/index")
    monkeypatch.setenv("POSAPL_INDEX_ROOT", "/srv/elsewhere")
    assert IndexSettings().root == ServiceSettings().index_root == Path("/srv/elsewhere")
    assert IndexSettings(root=Path("/flag")).root == Path("/flag")


def test_every_index_verb_reads_the_root_from_the_environment(
    store: Path, tiny_arch_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("POSAPL_INDEX_ROOT", str(store))
    assert posapl_main(["index", "status"]) == 0
    assert json.loads(capsys.readouterr().out)["root"] == str(store.resolve())
    assert posapl_main(["index", "update", "--no-progress", "--num-workers", "0", "--device", "cpu"]) == 0
    assert "nothing changed" in capsys.readouterr().out
    copy_images(rsicd_names(1, start=50), store.parent / "archive")
    assert posapl_main(["index", "update", "--no-progress", "--num-workers", "0", "--device", "cpu"]) == 0
    assert posapl_main(["index", "rollback"]) == 0
    assert "live version is now 1" in capsys.readouterr().out


def test_update_adds_a_new_image_folder_and_keeps_it(
    store: Path, tmp_path: Path, tiny_arch_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    new = tmp_path / "new-imagery"
    copy_images(rsicd_names(2, start=40), new)
    argv = ["index", "update", "--root", str(store), "--no-progress", "--num-workers", "0", "--device", "cpu"]
    assert posapl_main([*argv, "--add-images", "new-imagery"]) == 0
    config = StoreConfig.load(store)
    assert config.sources == [(tmp_path / "archive").resolve(), new.resolve()]  # recorded resolved
    with open_version(store) as version:
        assert version.manifest.counts["images"] == 5
        assert sorted(version.image_path(i).name for i in version.image_ids())[-2:] == sorted(rsicd_names(2, 40))
    copy_images(rsicd_names(1, start=60), new)
    assert posapl_main(argv) == 0  # the plain nightly update now scans the added folder too
    with open_version(store) as version:
        assert version.manifest.counts["images"] == 6 and version.manifest.counts["captions"] == 0
    bank = tmp_path / "bank.txt"
    bank.write_text("many planes are parked at the airport .\ndense forest .\n")
    assert posapl_main([*argv, "--add-captions", str(bank)]) == 0
    assert StoreConfig.load(store).captions == [bank.resolve()]
    with open_version(store) as version:
        assert [c.text for c in version.all_captions()] == bank.read_text().splitlines()


def test_serve_checks_the_model_against_the_store_before_starting(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from service.cli import fingerprint_mismatch, model_from_store

    for name in ("POSAPL_PRETRAINED", "POSAPL_ARCH", "POSAPL_PRESET", "POSAPL_CHECKPOINT"):
        monkeypatch.delenv(name, raising=False)
    config = StoreConfig.load(store)
    settings, refusal = model_from_store(ServiceSettings(index_root=store))
    assert refusal is None
    assert (settings.pretrained, settings.arch, settings.preset) == (config.pretrained, config.arch, config.preset)
    _, refusal = model_from_store(ServiceSettings(index_root=store, pretrained="laion2b_s34b_b79k"))
    assert "pretrained 'laion2b_s34b_b79k' (the store was built with 'random')" in refusal
    with open_version(store) as version:
        fingerprint = version.manifest.fingerprint
    assert fingerprint_mismatch(store, fingerprint) is None
    message = fingerprint_mismatch(store, "f" * 64)
    assert f"embedded by model {fingerprint[:12]}" in message and "ffffffffffff" in message
