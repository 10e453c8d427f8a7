"""Readers for the three annotation formats remote-sensing retrieval benchmarks are published in.

1. Karpathy-style `dataset_*.json`: `{"images": [{"filename", "split", "sentences": [{"raw"}]}]}` holding
   every split (RSICD, UCM, Sydney, RSITMD originals). `split` selects the rows.
2. HarMA/POSAPL JSON, one file per split: train is a list of `{"image", "caption", "image_id"}` (one row
   per caption), val/test a list of `{"image", "caption": [...]}` (one row per image).
3. GaLR/AMFMN "precomp" text: `{split}_filename.txt` (one image a line) and `{split}_caps.txt` (the same
   number of caption lines per image, in order). The file name fixes the split.

For the one-split formats (2, 3) the `split` argument only chooses the shape of the result: "train" gives
one row per caption (`TrainPairs`), anything else groups captions per image (`EvalSplit`). Either file
layout converts to either shape, so any annotation file, e.g. a subset of a train file, can serve as a
validation split.

Every referenced image must exist when the annotations are loaded: a missing image is an error naming the
file, never a skipped row, because a skipped image would silently shift captions onto the wrong images.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TRAIN = "train"
PRECOMP_SUFFIXES = ("_filename.txt", "_caps.txt")


class AnnotationError(ValueError):
    """An annotation file that cannot be read as any supported format, or that references missing images."""


@dataclass
class EvalSplit:
    """Images with their captions; indices into `image_paths` / `captions` link the two."""

    image_paths: list[Path]
    captions: list[str]
    img2txt: dict[int, list[int]] = field(default_factory=dict)
    txt2img: dict[int, int] = field(default_factory=dict)


@dataclass
class TrainPairs:
    """One row per caption; rows of the same image share an image id (soft targets in the alignment loss)."""

    image_paths: list[Path]
    captions: list[str]
    image_ids: list[int]

    def __len__(self) -> int:
        return len(self.captions)

    def first_images(self, count: int) -> TrainPairs:
        """The rows of the first `count` images (ids are in file order), for quick smoke runs."""
        keep = [i for i, image_id in enumerate(self.image_ids) if image_id < count]
        return TrainPairs(
            image_paths=[self.image_paths[i] for i in keep],
            captions=[self.captions[i] for i in keep],
            image_ids=[self.image_ids[i] for i in keep],
        )


# (image reference as written in the file, captions) in file order; one entry per image.
_Grouped = list[tuple[str, list[str]]]


def load_annotations(path: Path, split: str, image_root: Path | None = None) -> EvalSplit | TrainPairs:
    """Read `split` of an annotation file in any supported format: `TrainPairs` for "train", else `EvalSplit`.

    `image_root` is the folder image names are relative to. Default: the annotation file's folder, or its
    `images/` subfolder when the images are there (Karpathy files); for precomp files `<folder>/<split>/`.
    """
    if split == TRAIN:
        return load_train_pairs(path, image_root, split)
    return load_eval_split(path, image_root, split)


def load_train_pairs(path: Path, image_root: Path | None = None, split: str = TRAIN) -> TrainPairs:
    """`split` rows of any annotation file as one row per caption."""
    return _to_pairs(*_load_grouped(Path(path), split, image_root))


def load_eval_split(path: Path, image_root: Path | None = None, split: str = "test") -> EvalSplit:
    """`split` rows of any annotation file grouped per image, for retrieval evaluation."""
    return _to_eval(*_load_grouped(Path(path), split, image_root))


def _load_grouped(path: Path, split: str, image_root: Path | None) -> tuple[list[Path], _Grouped]:
    grouped, default_roots = _read_grouped(path, split)
    if not grouped:
        raise AnnotationError(f"{path} has no images for split {split!r}")
    roots = [Path(image_root)] if image_root is not None else default_roots
    return _resolve_images(path, [name for name, _ in grouped], roots), grouped


def _to_pairs(image_paths: list[Path], grouped: _Grouped) -> TrainPairs:
    paths, captions, ids = [], [], []
    for image_id, (image_path, (_, texts)) in enumerate(zip(image_paths, grouped)):
        for text in texts:
            paths.append(image_path)
            captions.append(text)
            ids.append(image_id)
    return TrainPairs(image_paths=paths, captions=captions, image_ids=ids)


def _to_eval(image_paths: list[Path], grouped: _Grouped) -> EvalSplit:
    split = EvalSplit(image_paths=list(image_paths), captions=[])
    for image_index, (_, texts) in enumerate(grouped):
        split.img2txt[image_index] = []
        for text in texts:
            split.txt2img[len(split.captions)] = image_index
            split.img2txt[image_index].append(len(split.captions))
            split.captions.append(text)
    return split


def _read_grouped(path: Path, split: str) -> tuple[_Grouped, list[Path]]:
    """Detect the format from the path and content; returns captions per image and default image roots."""
    if path.is_dir():
        path = path / f"{split}_caps.txt"
    if not path.is_file():
        raise AnnotationError(f"annotation file {path} does not exist")
    if path.name.endswith(PRECOMP_SUFFIXES):
        file_split = path.name.removesuffix("_filename.txt").removesuffix("_caps.txt")
        return _read_precomp(path.parent, file_split), [path.parent / file_split]
    if path.suffix.lower() != ".json":
        raise AnnotationError(
            f"{path}: unknown annotation format; expected a .json file (Karpathy dataset_*.json or HarMA list) "
            "or precomp text files named <split>_caps.txt / <split>_filename.txt"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AnnotationError(f"{path} is not valid JSON: {exc}") from exc
    if isinstance(data, dict) and "images" in data:
        return _read_karpathy(path, data["images"], split), [path.parent, path.parent / "images"]
    if isinstance(data, list):
        return _read_harma(path, data), [path.parent]
    raise AnnotationError(
        f"{path}: JSON is neither a Karpathy dataset (object with 'images') nor a HarMA list of records"
    )


def _read_karpathy(path: Path, images: Any, split: str) -> _Grouped:
    if not isinstance(images, list):
        raise AnnotationError(f"{path}: 'images' must be a list")
    grouped: _Grouped = []
    for index, entry in enumerate(images):
        try:
            if entry["split"] != split:
                continue
            name = entry["filename"]
            captions = [sentence["raw"] for sentence in entry["sentences"]]
        except (KeyError, TypeError) as exc:
            raise AnnotationError(f"{path}: images[{index}] lacks 'filename', 'split' or 'sentences[].raw'") from exc
        grouped.append((_text(path, name, f"images[{index}].filename"), _captions(path, captions, index)))
    return grouped


def _read_harma(path: Path, records: list[Any]) -> _Grouped:
    """Eval records carry a caption list; train records one caption each, merged per image in order."""
    grouped: _Grouped = []
    position: dict[str, int] = {}
    for index, record in enumerate(records):
        if not isinstance(record, dict) or "image" not in record or "caption" not in record:
            raise AnnotationError(f"{path}: record {index} is not an object with 'image' and 'caption'")
        name = _text(path, record["image"], f"record {index} 'image'")
        caption = record["caption"]
        captions = caption if isinstance(caption, list) else [caption]
        if name not in position:
            position[name] = len(grouped)
            grouped.append((name, []))
        grouped[position[name]][1].extend(_captions(path, captions, index))
    return grouped


def _read_precomp(folder: Path, split: str) -> _Grouped:
    names_file, caps_file = folder / f"{split}_filename.txt", folder / f"{split}_caps.txt"
    for required in (names_file, caps_file):
        if not required.is_file():
            raise AnnotationError(f"precomp annotations need {names_file.name} and {caps_file.name}: {required} "
                                  "does not exist")
    names = _lines(names_file)
    captions = _lines(caps_file)
    if not names:
        raise AnnotationError(f"{names_file} lists no images")
    if len(captions) % len(names):
        raise AnnotationError(f"{caps_file} has {len(captions)} caption lines, not a multiple of the "
                              f"{len(names)} images in {names_file}")
    per_image = len(captions) // len(names)
    if per_image == 0:
        raise AnnotationError(f"{caps_file} has fewer caption lines than images in {names_file}")
    grouped: _Grouped = []
    for index, name in enumerate(names):
        if not name.strip():
            raise AnnotationError(f"{names_file}: line {index + 1} is empty")
        grouped.append((name.strip(), captions[index * per_image : (index + 1) * per_image]))
    return grouped


def _lines(path: Path) -> list[str]:
    """Lines without the trailing empty ones an editor may add; an empty line inside is kept (and fails later)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def _text(path: Path, value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise AnnotationError(f"{path}: {where} must be a non-empty string, got {value!r}")
    return value.strip()


def _captions(path: Path, captions: list[Any], index: int) -> list[str]:
    if not captions or not all(isinstance(c, str) for c in captions):
        raise AnnotationError(f"{path}: entry {index} needs one or more caption strings")
    return list(captions)


def _resolve_images(annotation: Path, names: list[str], roots: list[Path]) -> list[Path]:
    """Pick the first root under which the first image exists, then require every image to exist there.

    Absolute image names are kept as they are (a hand-made subset file can point anywhere).
    """
    root = next((r for r in roots if (r / names[0]).is_file()), roots[0])
    paths = [root / name for name in names]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise AnnotationError(
            f"{annotation}: {len(missing)} of {len(paths)} images are missing, e.g. {missing[0]} "
            f"(image root {root}; pass the folder that holds the images with --images)"
        )
    return paths
