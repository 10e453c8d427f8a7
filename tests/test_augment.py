"""Training augmentation: output layout, reproducibility under a seed, and each operation on real images."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from posapl.preprocess import IMAGE_MEAN, IMAGE_STD
from training.augment import OPERATIONS, RandAugment, train_transform


@pytest.fixture(scope="module")
def images(data_dir: Path) -> list[Image.Image]:
    paths = [data_dir / "rsicd" / "test" / "port_46.jpg", data_dir / "ucm" / "images" / "81.tif"]
    return [Image.open(path).convert("RGB") for path in paths]


def test_train_transform_shape_and_normalisation(images: list[Image.Image]) -> None:
    transform = train_transform(224)
    for image in images:
        out = transform(image)
        assert out.shape == (3, 224, 224) and out.dtype == torch.float32
    normalise = transform.transforms[-1]
    assert (tuple(normalise.mean), tuple(normalise.std)) == (IMAGE_MEAN, IMAGE_STD)


def test_train_transform_is_reproducible_with_a_seed(images: list[Image.Image]) -> None:
    transform = train_transform(224)
    torch.manual_seed(1)
    first = [transform(image) for image in images]
    torch.manual_seed(1)
    again = [transform(image) for image in images]
    torch.manual_seed(2)
    other = [transform(image) for image in images]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not all(torch.equal(a, b) for a, b in zip(first, other))


@pytest.mark.parametrize("name", sorted(OPERATIONS))
def test_each_operation_keeps_size_and_mode(images: list[Image.Image], name: str) -> None:
    out = OPERATIONS[name](images[0], 7.0)
    assert out.size == images[0].size and out.mode == "RGB"
    changed = name != "Identity"
    assert (out.tobytes() != images[0].tobytes()) == changed


def test_rand_augment_applies_the_chosen_operations() -> None:
    image = Image.new("RGB", (32, 32), (10, 200, 30))
    image.putpixel((0, 0), (255, 255, 255))
    always_rotate = RandAugment(num_ops=2, magnitude=7, prob=1.0, operations=("Rotate",))
    never = RandAugment(num_ops=2, magnitude=7, prob=0.0)
    torch.manual_seed(0)
    assert always_rotate(image).tobytes() != image.tobytes()
    assert never(image).tobytes() == image.tobytes()


def test_rand_augment_rejects_bad_configuration() -> None:
    with pytest.raises(ValueError, match="unknown augmentation operations"):
        RandAugment(operations=("Solarize",))
    with pytest.raises(ValueError, match="magnitude"):
        RandAugment(magnitude=11)
