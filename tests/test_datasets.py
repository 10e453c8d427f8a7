"""Training datasets: items from real images, the POS tag cache, and unreadable images as named errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from posapl.preprocess import eval_transform
from training.annotations import TrainPairs, load_eval_split
from training.datasets import ImageDataset, ImageReadError, PosCache, TrainDataset, collate_pairs, load_image


class CountingTagger:
    """The real tagger, counting which captions reach spaCy."""

    def __init__(self, tagger) -> None:
        self.nlp = tagger.nlp
        self.inner = tagger
        self.seen: list[str] = []

    def tag(self, texts: list[str]) -> list[list[str]]:
        self.seen.extend(texts)
        return self.inner.tag(texts)


def test_pos_cache_tags_each_caption_once_across_runs(tmp_path: Path, pos_tagger) -> None:
    path = tmp_path / "tags.json"
    first = CountingTagger(pos_tagger)
    tags = PosCache(path, first).tag(["a red roof", "two ponds", "a red roof"])
    assert first.seen == ["a red roof", "two ponds"]
    assert tags[0] == tags[2] == ["determiner", "adjective", "noun"]
    again = CountingTagger(pos_tagger)
    assert PosCache(path, again).tag(["two ponds", "a red roof"]) == [tags[1], tags[0]]
    assert again.seen == []
    # A cache written by another pipeline is not trusted.
    data = json.loads(path.read_text())
    path.write_text(json.dumps(data | {"pipeline": "xx_other-0.0"}))
    other = CountingTagger(pos_tagger)
    PosCache(path, other).tag(["two ponds"])
    assert other.seen == ["two ponds"]


def test_train_dataset_items(data_dir: Path, pos_tagger) -> None:
    image = data_dir / "ucm" / "images" / "81.tif"
    pairs = TrainPairs(image_paths=[image, image], captions=["There is a piece of Farmland.", "Crops!"],
                       image_ids=[4, 4])
    dataset = TrainDataset(pairs, PosCache(None, pos_tagger), eval_transform(224))
    images, captions, pos, ids = collate_pairs([dataset[0], dataset[1]])
    assert images.shape == (2, 3, 224, 224)
    assert captions == ["there is a piece of farmland", "crops"]
    assert pos[0] == ["pronoun", "verb", "determiner", "noun", "adposition", "noun"]
    assert torch.equal(ids, torch.tensor([4, 4]))


def test_empty_caption_is_an_error_naming_its_row(data_dir: Path, pos_tagger) -> None:
    image = data_dir / "ucm" / "images" / "81.tif"
    pairs = TrainPairs(image_paths=[image, image], captions=["fine", " ?! "], image_ids=[0, 0])
    with pytest.raises(ValueError, match="train: caption 1"):
        TrainDataset(pairs, PosCache(None, pos_tagger), eval_transform(224))


def test_unreadable_image_is_an_error_naming_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    with pytest.raises(ImageReadError, match="broken.jpg"):
        load_image(broken)
    bad_tiff = tmp_path / "broken.tif"
    bad_tiff.write_bytes(b"II*\x00garbage")
    with pytest.raises(ImageReadError, match="broken.tif"):
        load_image(bad_tiff)


def test_image_dataset_reads_real_splits_in_order(data_dir: Path) -> None:
    split = load_eval_split(data_dir / "ucm" / "dataset_ucm.json")
    dataset = ImageDataset(split.image_paths[:3], eval_transform(224))
    assert len(dataset) == 3 and dataset[2].shape == (3, 224, 224)
