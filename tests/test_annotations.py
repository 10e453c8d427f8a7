"""The three annotation formats, on the real files in ../shared/data and on small hand-made files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.annotations import (
    AnnotationError,
    EvalSplit,
    TrainPairs,
    load_annotations,
    load_eval_split,
    load_train_pairs,
)


def _check_eval(split: EvalSplit) -> None:
    assert all(path.is_file() for path in split.image_paths)
    assert sorted(t for texts in split.img2txt.values() for t in texts) == list(range(len(split.captions)))
    assert all(split.txt2img[t] == i for i, texts in split.img2txt.items() for t in texts)


def test_harma_json_rsicd_test(data_dir: Path) -> None:
    split = load_annotations(data_dir / "rsicd" / "rsicd_test.json", "test")
    assert isinstance(split, EvalSplit)
    assert (len(split.image_paths), len(split.captions)) == (1093, 5465)
    assert split.image_paths[0] == data_dir / "rsicd" / "test" / "bridge_358.jpg"
    assert split.captions[0] == "a large number of trees are planted on both sides of the bridge ."
    assert split.img2txt[0] == [0, 1, 2, 3, 4] and split.txt2img[5] == 1
    _check_eval(split)


def test_precomp_rsicd_train(data_dir: Path) -> None:
    pairs = load_annotations(data_dir / "rsicd" / "train_caps.txt", "train")
    assert isinstance(pairs, TrainPairs)
    assert (len(set(pairs.image_paths)), len(pairs)) == (800, 4000)
    assert pairs.image_paths[0] == data_dir / "rsicd" / "train" / "00052.jpg"
    assert pairs.captions[0] == "an irregular building is next to the playground ."
    assert pairs.image_ids[:6] == [0, 0, 0, 0, 0, 1]
    # The same files read grouped per image, from either of the two precomp file names.
    grouped = load_eval_split(data_dir / "rsicd" / "train_filename.txt", split="train")
    assert (len(grouped.image_paths), len(grouped.captions)) == (800, 4000)
    _check_eval(grouped)


def test_karpathy_ucm_test(data_dir: Path) -> None:
    split = load_annotations(data_dir / "ucm" / "dataset_ucm.json", "test")
    assert (len(split.image_paths), len(split.captions)) == (210, 1050)
    assert all(path.parent == data_dir / "ucm" / "images" and path.suffix == ".tif" for path in split.image_paths)
    assert split.captions[0] == "There is a piece of farmland ."
    _check_eval(split)


def test_karpathy_split_whose_images_are_absent_is_an_error_naming_one(data_dir: Path) -> None:
    with pytest.raises(AnnotationError, match=r"1680 of 1680 images are missing, e\.g\. .*\.tif"):
        load_annotations(data_dir / "ucm" / "dataset_ucm.json", "train")


def test_harma_train_records_group_per_image(tmp_path: Path, data_dir: Path) -> None:
    image = data_dir / "rsicd" / "test" / "port_46.jpg"
    other = data_dir / "rsicd" / "test" / "beach_4.jpg"
    records = [
        {"image": str(image), "caption": "many boats in a port .", "image_id": 0},
        {"image": str(other), "caption": "a beach .", "image_id": 1},
        {"image": str(image), "caption": "a harbour with boats .", "image_id": 0},
    ]
    path = tmp_path / "train.json"
    path.write_text(json.dumps(records))
    pairs = load_train_pairs(path)
    assert pairs.image_ids == [0, 0, 1]
    assert pairs.captions == ["many boats in a port .", "a harbour with boats .", "a beach ."]
    split = load_eval_split(path)
    assert split.image_paths == [image, other]
    assert split.img2txt == {0: [0, 1], 1: [2]}


def test_image_root_override(tmp_path: Path, data_dir: Path) -> None:
    path = tmp_path / "val.json"
    path.write_text(json.dumps([{"image": "port_46.jpg", "caption": ["a port ."]}]))
    with pytest.raises(AnnotationError, match="port_46.jpg"):
        load_eval_split(path)
    split = load_eval_split(path, image_root=data_dir / "rsicd" / "test")
    assert split.image_paths == [data_dir / "rsicd" / "test" / "port_46.jpg"]


def test_precomp_caption_count_must_match(tmp_path: Path) -> None:
    (tmp_path / "val_filename.txt").write_text("a.jpg\nb.jpg\n")
    (tmp_path / "val_caps.txt").write_text("one\ntwo\nthree\n")
    with pytest.raises(AnnotationError, match="3 caption lines, not a multiple of the 2 images"):
        load_eval_split(tmp_path / "val_caps.txt", split="val")


def test_precomp_needs_both_files(tmp_path: Path) -> None:
    (tmp_path / "val_caps.txt").write_text("one\n")
    with pytest.raises(AnnotationError, match="val_filename.txt"):
        load_eval_split(tmp_path / "val_caps.txt")


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("captions.csv", "x", "unknown annotation format"),
        ("broken.json", "{not json", "not valid JSON"),
        ("odd.json", '{"annotations": []}', "neither a Karpathy dataset"),
        ("records.json", '[{"file": "a.jpg"}]', "record 0 is not an object with 'image' and 'caption'"),
        ("empty.json", "[]", "has no images"),
        ("nocaps.json", '[{"image": "a.jpg", "caption": []}]', "one or more caption strings"),
    ],
)
def test_bad_annotation_files_are_clear_errors(tmp_path: Path, name: str, content: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(AnnotationError, match=message):
        load_annotations(path, "test")


def test_missing_annotation_file(tmp_path: Path) -> None:
    with pytest.raises(AnnotationError, match="does not exist"):
        load_annotations(tmp_path / "nope.json", "test")
