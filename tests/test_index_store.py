"""A full build on the shared RSICD test folder and the UCM TIFFs, read back through index.store."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from index_helpers import RSICD_TEST, tiny_settings

from index.captions import load_corpus
from index.job import run_update
from index.layout import file_sha256
from index.store import IndexIntegrityError, open_version
from posapl.cli import main as posapl_main


@pytest.fixture(scope="module")
def full_store(tmp_path_factory: pytest.TempPathFactory, tiny_arch_path: Path, data_dir: Path) -> Path:
    root = tmp_path_factory.mktemp("full") / "store"
    captions = tmp_path_factory.mktemp("captions") / "bank.txt"
    corpus = json.loads((data_dir / "rsicd" / "rsicd_test.json").read_text())
    captions.write_text("\n".join(entry["caption"][0] for entry in corpus[:40]) + "\n")
    settings = tiny_settings(
        root, tiny_arch_path, [RSICD_TEST, data_dir / "ucm" / "images"], captions=[captions], batch_size=64
    )
    report = run_update(root, settings, settings.store_config())
    assert report.status == "published" and report.version == 1
    return root


def test_full_build_indexes_every_file(full_store: Path, data_dir: Path) -> None:
    jpegs = len(list(RSICD_TEST.glob("*.jpg")))
    tiffs = len(list((data_dir / "ucm" / "images").glob("*.tif")))
    with open_version(full_store) as version:
        counts = version.manifest.counts
        assert counts["images"] + counts["duplicates"] == jpegs + tiffs == 1093 + 210
        assert counts["skipped"] == 0 and counts["captions"] == 40
        assert version.image_index.ntotal == counts["images"]
        assert version.manifest.dim == 32 and len(version.manifest.fingerprint) == 64
        # the store records resolved folders; ../shared may be a symlink
        assert version.manifest.sources == [str(RSICD_TEST.resolve()), str((data_dir / "ucm" / "images").resolve())]
        records = version.all_images()
        assert len({r.id for r in records}) == len(records) == counts["images"]
        assert {r.source for r in records} == {0, 1}


def test_rerank_profiles_are_stored_for_both_sides(full_store: Path) -> None:
    with open_version(full_store) as version:
        assert version.manifest.raw["profiles"]["method"] == "posapl.rerank.build_profiles"
        image_ids, caption_ids = version.image_ids(), version.caption_ids()
        image_profiles = version.image_profiles(image_ids[:5])
        caption_profiles = version.caption_profiles(caption_ids[:5])
        # header: bank size, then the sum of similarities to the bank
        assert np.all(image_profiles[:, 0] == len(caption_ids)) and np.all(caption_profiles[:, 0] == len(image_ids))
        first = version.image_vectors(image_ids[:1])
        bank = version.caption_index.reconstruct_batch(caption_ids)
        assert image_profiles[0, 1] == pytest.approx(float((bank @ first[0]).sum()), rel=1e-4, abs=1e-4)
        with pytest.raises(KeyError):
            version.image_profiles([-1])


def test_search_with_a_stored_vector_returns_that_image_first(full_store: Path) -> None:
    with open_version(full_store) as version:
        ids = version.image_ids()[::13]
        scores, found = version.search_images(version.image_vectors(ids), 3)
        assert np.array_equal(found[:, 0], ids)
        assert np.allclose(scores[:, 0], 1.0, atol=1e-5)
        caption_ids = version.caption_ids()
        vectors = version.caption_index.reconstruct_batch(caption_ids[:10])
        caption_scores, found_captions = version.search_captions(vectors, 1)
        assert np.allclose(caption_scores[:, 0], 1.0, atol=1e-5)
        # identical captions share a vector, so compare texts rather than ids
        assert version.caption_texts(found_captions[:, 0]) == version.caption_texts(caption_ids[:10])


def test_metadata_is_queryable_by_id(full_store: Path) -> None:
    with open_version(full_store) as version:
        for image_id in version.image_ids()[::97]:
            record = version.image(int(image_id))
            path = version.image_path(int(image_id))
            assert path.is_file() and file_sha256(path) == record.sha256
            assert path.stat().st_size == record.bytes and record.mtime == path.stat().st_mtime
            assert (record.width, record.height) in {(224, 224), (256, 256)}
        with pytest.raises(KeyError):
            version.image(12345)
        assert version.images([12345]) == [None]


def test_status_command_reports_the_live_version(full_store: Path, capsys: pytest.CaptureFixture) -> None:
    assert posapl_main(["index", "status", "--root", str(full_store)]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["current"] == 1 and status["counts"]["images"] > 1200


def test_caption_corpus_reads_every_annotation_format(data_dir: Path) -> None:
    rsicd = load_corpus([data_dir / "rsicd" / "rsicd_test.json"])
    assert len(rsicd) == 5465
    ucm = load_corpus([data_dir / "ucm" / "dataset_ucm.json"])
    assert len(ucm) == 5 * 2100
    lines = load_corpus([data_dir / "rsicd" / "train_caps.txt"])
    assert len(lines) == 4000 and lines[0][1].endswith("train_caps.txt")


def test_reader_refuses_a_missing_store(tmp_path: Path) -> None:
    with pytest.raises(IndexIntegrityError, match="no published index version"):
        open_version(tmp_path)
