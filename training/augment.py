"""Training-time image augmentation, matching the reference recipe.

RandomResizedCrop(224, scale 0.5-1, bicubic) → horizontal flip → RandAugment (2 ops, magnitude 7) →
tensor → CLIP mean/std. The RandAugment follows the variant the reference uses: two operations drawn
with replacement from a fixed geometric + photometric set, each applied with probability 0.5 at a fixed
magnitude (7 of 10), geometric ones with a random sign and grey fill. All randomness comes from torch's
generator, so `torch.manual_seed` (and DataLoader worker seeding) makes it reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from PIL import Image
from torchvision import transforms
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F

from posapl.preprocess import normalize

MAX_LEVEL = 10.0
FILL = [128, 128, 128]


def _enhance_factor(level: float) -> float:
    return level / MAX_LEVEL * 1.8 + 0.1


def _signed(value: float) -> float:
    return -value if torch.rand(()) < 0.5 else value


def _shear(axis: int) -> Callable[[Image.Image, float], Image.Image]:
    def apply(image: Image.Image, level: float) -> Image.Image:
        degrees = math.degrees(math.atan(_signed(level / MAX_LEVEL * 0.3)))
        shear = [degrees, 0.0] if axis == 0 else [0.0, degrees]
        return F.affine(image, angle=0.0, translate=[0, 0], scale=1.0, shear=shear, fill=FILL)

    return apply


def _translate(axis: int) -> Callable[[Image.Image, float], Image.Image]:
    def apply(image: Image.Image, level: float) -> Image.Image:
        pixels = round(_signed(level / MAX_LEVEL * 10.0))
        shift = [pixels, 0] if axis == 0 else [0, pixels]
        return F.affine(image, angle=0.0, translate=shift, scale=1.0, shear=[0.0, 0.0], fill=FILL)

    return apply


def _rotate(image: Image.Image, level: float) -> Image.Image:
    return F.rotate(image, _signed(level / MAX_LEVEL * 30.0), fill=FILL)


OPERATIONS: dict[str, Callable[[Image.Image, float], Image.Image]] = {
    "Identity": lambda image, level: image,
    "AutoContrast": lambda image, level: F.autocontrast(image),
    "Equalize": lambda image, level: F.equalize(image),
    "Brightness": lambda image, level: F.adjust_brightness(image, _enhance_factor(level)),
    "Sharpness": lambda image, level: F.adjust_sharpness(image, _enhance_factor(level)),
    "ShearX": _shear(0),
    "ShearY": _shear(1),
    "TranslateX": _translate(0),
    "TranslateY": _translate(1),
    "Rotate": _rotate,
}


class RandAugment:
    """Apply `num_ops` operations drawn with replacement, each with probability `prob`, at `magnitude`."""

    def __init__(self, num_ops: int = 2, magnitude: float = 7.0, prob: float = 0.5,
                 operations: tuple[str, ...] = tuple(OPERATIONS)) -> None:
        unknown = set(operations) - set(OPERATIONS)
        if unknown:
            raise ValueError(f"unknown augmentation operations {sorted(unknown)}; known: {sorted(OPERATIONS)}")
        if not 0 <= magnitude <= MAX_LEVEL:
            raise ValueError(f"magnitude must be in [0, {MAX_LEVEL}], got {magnitude}")
        self.num_ops, self.magnitude, self.prob, self.operations = num_ops, magnitude, prob, operations

    def __call__(self, image: Image.Image) -> Image.Image:
        for index in torch.randint(len(self.operations), (self.num_ops,)).tolist():
            if torch.rand(()) < self.prob:
                image = OPERATIONS[self.operations[index]](image, self.magnitude)
        return image

    def __repr__(self) -> str:
        return f"RandAugment(num_ops={self.num_ops}, magnitude={self.magnitude}, prob={self.prob})"


def _rgb(image: Image.Image) -> Image.Image:
    return image.convert("RGB")


def train_transform(image_size: int = 224) -> Callable[[Image.Image], torch.Tensor]:
    return transforms.Compose(
        [
            transforms.Lambda(_rgb),
            transforms.RandomResizedCrop(image_size, scale=(0.5, 1.0), interpolation=InterpolationMode.BICUBIC),
            transforms.RandomHorizontalFlip(),
            RandAugment(num_ops=2, magnitude=7),
            transforms.ToTensor(),
            normalize(),
        ]
    )
