"""Training-time image augmentation, matching the reference recipe.

RandomResizedCrop(224, scale 0.5-1, bicubic) → horizontal flip → RandAugment (2 ops, magnitude 7) →
tensor → CLIP mean/std. The RandAugment follows the variant the reference uses (an OpenCV/numpy
RandomAugment): two operations drawn with replacement from a fixed geometric + photometric set, each
applied with probability 0.5 at a fixed magnitude (7 of 10), geometric ones with a random sign and grey fill.

The geometric operations reproduce OpenCV's `warpAffine` as the reference calls it: the shears are about
the top-left corner (pixel (0, 0) stays put, the far edge moves by factor × size), rotation is about
(W/2, H/2) in pixel-centre coordinates, and all of them interpolate bilinearly with neighbours outside
the image counting as the fill colour. OpenCV quantises sample positions to 1/32 pixel; we sample at the
exact position, which moves a grey level by at most one or two at the sharpest edges.

Two reference quirks are reproduced by default and named as such, because the faithful recipe is the
default and corrections are options measured against it:
- AutoContrast (`autocontrast="reference"`): the reference negates the channel minimum as a numpy uint8,
  which wraps to 256 - low, so every channel whose minimum is above 0 comes out all 255. "fixed" is the
  correct per-channel stretch (PIL's autocontrast).
- Sharpness (`sharpness="reference"`): the reference casts its blend to uint8 without clipping, so values
  beyond 0..255 wrap around (truncated value mod 256, as an x86 float→uint8 cast does). "fixed" clips.

All randomness comes from torch's generator, so `torch.manual_seed` (and DataLoader worker seeding) makes
it reproducible.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
import torch
from PIL import Image
from torchvision import transforms
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F

from posapl.preprocess import normalize

MAX_LEVEL = 10.0
FILL = (128, 128, 128)
TRANSLATE_PIXELS = 10.0
SHEAR_MAX = 0.3
ROTATE_DEGREES = 30.0
QuirkChoice = Literal["reference", "fixed"]
QUIRK_CHOICES: tuple[str, ...] = ("reference", "fixed")
Operation = Callable[[Image.Image, float], Image.Image]


def _enhance_factor(level: float) -> float:
    return level / MAX_LEVEL * 1.8 + 0.1


def _signed(value: float) -> float:
    return -value if torch.rand(()) < 0.5 else value


def warp_affine(array: np.ndarray, matrix: np.ndarray, fill: tuple[int, ...] = FILL) -> np.ndarray:
    """Warp an (H, W, C) uint8 image by the forward 2x3 `matrix` the way OpenCV's `warpAffine` does.

    Each output pixel samples the source at the inverse-mapped position, bilinearly, in pixel-centre
    coordinates; a neighbour outside the image counts as `fill`, so edges blend into the fill colour.
    """
    height, width, channels = array.shape
    forward = np.asarray(matrix, dtype=np.float64)
    det = forward[0, 0] * forward[1, 1] - forward[0, 1] * forward[1, 0]
    inverse = np.array([[forward[1, 1], -forward[0, 1]], [-forward[1, 0], forward[0, 0]]]) / det
    shift = -inverse @ forward[:, 2]
    xs, ys = np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64)[:, None]
    # A position more than a pixel outside the image reads only fill; clamped to -1 or W/H it still does.
    src_x = np.clip(inverse[0, 0] * xs + inverse[0, 1] * ys + shift[0], -1, width)
    src_y = np.clip(inverse[1, 0] * xs + inverse[1, 1] * ys + shift[1], -1, height)
    x0, y0 = np.floor(src_x), np.floor(src_y)
    fx = (src_x - x0).astype(np.float32).reshape(-1, 1)
    fy = (src_y - y0).astype(np.float32).reshape(-1, 1)
    # The image inside a frame of fill (1 pixel before, 2 after), so every neighbour index is in range.
    stride = width + 3
    padded = np.empty((height + 3, stride, channels), dtype=np.float32)
    padded[...] = fill
    padded[1 : height + 1, 1 : width + 1] = array
    flat = padded.reshape(-1, channels)
    top_left = ((y0.astype(np.int64) + 1) * stride + x0.astype(np.int64) + 1).ravel()
    top = flat[top_left] + (flat[top_left + 1] - flat[top_left]) * fx
    bottom = flat[top_left + stride] + (flat[top_left + stride + 1] - flat[top_left + stride]) * fx
    value = top + (bottom - top) * fy
    return np.clip(np.floor(value + 0.5), 0, 255).astype(np.uint8).reshape(height, width, channels)


def shear_matrix(axis: int, factor: float) -> np.ndarray:
    """Forward shear about the top-left corner: x' = x + factor·y (axis 0) or y' = y + factor·x (axis 1).

    float32 like the reference's matrix, so the factor is rounded the same way."""
    matrix = np.array([[1, 0, 0], [0, 1, 0]], dtype=np.float32)
    matrix[axis, 1 - axis] = factor
    return matrix


def translation_matrix(axis: int, pixels: float) -> np.ndarray:
    matrix = np.array([[1, 0, 0], [0, 1, 0]], dtype=np.float32)
    matrix[axis, 2] = -pixels
    return matrix


def rotation_matrix(width: int, height: int, degrees: float) -> np.ndarray:
    """OpenCV's `getRotationMatrix2D` about (W/2, H/2): counter-clockwise for positive degrees."""
    cx, cy = width / 2, height / 2
    alpha, beta = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    return np.array([[alpha, beta, (1 - alpha) * cx - beta * cy], [-beta, alpha, beta * cx + (1 - alpha) * cy]])


def autocontrast(array: np.ndarray, reference_wraparound: bool) -> np.ndarray:
    """Stretch each channel to 0..255 through a truncating lookup table.

    With `reference_wraparound` the offset is computed as the reference does, from the uint8 minimum
    negated in uint8 (256 - low when low > 0): the table is then ≥ 255 everywhere and the channel turns
    white. A constant channel is left alone in both.
    """
    out = np.empty_like(array)
    for channel in range(array.shape[2]):
        plane = array[..., channel]
        low, high = int(plane.min()), int(plane.max())
        if high <= low:
            out[..., channel] = plane
            continue
        scale = 255 / (high - low)
        negated_low = (-low) % 256 if reference_wraparound else -low
        table = np.clip(np.arange(256) * scale + negated_low * scale, 0, 255).astype(np.uint8)
        out[..., channel] = table[plane]
    return out


def sharpness(array: np.ndarray, factor: float, reference_wraparound: bool) -> np.ndarray:
    """Blend with a smoothed copy (3x3 kernel 1/13, centre 5/13) on interior pixels; the border is kept.

    The smoothed copy is rounded to uint8 as OpenCV's filter2D does; the blend is float32. With
    `reference_wraparound` the blend is cast to uint8 the reference's way (truncate, then mod 256, so an
    overshoot to 257 becomes 1); otherwise it is clipped to 0..255 first.
    """
    if factor == 1.0:
        return array.copy()
    height, width = array.shape[:2]
    pixels = array.astype(np.int32)
    weighted = 4 * pixels[1:-1, 1:-1]
    for dy in range(3):
        for dx in range(3):
            weighted = weighted + pixels[dy : dy + height - 2, dx : dx + width - 2]
    smooth = np.floor(weighted / 13 + 0.5).astype(np.float32)
    blend = smooth + np.float32(factor) * (array[1:-1, 1:-1].astype(np.float32) - smooth)
    if not reference_wraparound:
        blend = np.clip(blend, 0, 255)
    out = array.copy()
    out[1:-1, 1:-1] = (np.trunc(blend).astype(np.int64) % 256).astype(np.uint8)
    return out


def _on_array(function: Callable[[np.ndarray, float], np.ndarray]) -> Operation:
    def apply(image: Image.Image, level: float) -> Image.Image:
        return Image.fromarray(function(np.asarray(image.convert("RGB")), level))

    return apply


def _shear(axis: int) -> Operation:
    def apply(array: np.ndarray, level: float) -> np.ndarray:
        return warp_affine(array, shear_matrix(axis, _signed(level / MAX_LEVEL * SHEAR_MAX)))

    return _on_array(apply)


def _translate(axis: int) -> Operation:
    def apply(array: np.ndarray, level: float) -> np.ndarray:
        return warp_affine(array, translation_matrix(axis, _signed(level / MAX_LEVEL * TRANSLATE_PIXELS)))

    return _on_array(apply)


def _rotate(array: np.ndarray, level: float) -> np.ndarray:
    degrees = _signed(level / MAX_LEVEL * ROTATE_DEGREES)
    return warp_affine(array, rotation_matrix(array.shape[1], array.shape[0], degrees))


AUTOCONTRAST: dict[str, Operation] = {
    "reference": _on_array(lambda array, level: autocontrast(array, reference_wraparound=True)),
    "fixed": _on_array(lambda array, level: autocontrast(array, reference_wraparound=False)),
}
SHARPNESS: dict[str, Operation] = {
    "reference": _on_array(lambda array, level: sharpness(array, _enhance_factor(level), reference_wraparound=True)),
    "fixed": _on_array(lambda array, level: sharpness(array, _enhance_factor(level), reference_wraparound=False)),
}

# The reference's operation set, with its quirks (see the module docstring).
OPERATIONS: dict[str, Operation] = {
    "Identity": lambda image, level: image,
    "AutoContrast": AUTOCONTRAST["reference"],
    "Equalize": lambda image, level: F.equalize(image),
    "Brightness": lambda image, level: F.adjust_brightness(image, _enhance_factor(level)),
    "Sharpness": SHARPNESS["reference"],
    "ShearX": _shear(0),
    "ShearY": _shear(1),
    "TranslateX": _translate(0),
    "TranslateY": _translate(1),
    "Rotate": _on_array(_rotate),
}


class RandAugment:
    """Apply `num_ops` operations drawn with replacement, each with probability `prob`, at `magnitude`.

    `autocontrast` and `sharpness` choose between the reference's quirky versions and the fixed ones."""

    def __init__(self, num_ops: int = 2, magnitude: float = 7.0, prob: float = 0.5,
                 operations: tuple[str, ...] = tuple(OPERATIONS), autocontrast: QuirkChoice = "reference",
                 sharpness: QuirkChoice = "reference") -> None:
        unknown = set(operations) - set(OPERATIONS)
        if unknown:
            raise ValueError(f"unknown augmentation operations {sorted(unknown)}; known: {sorted(OPERATIONS)}")
        if not 0 <= magnitude <= MAX_LEVEL:
            raise ValueError(f"magnitude must be in [0, {MAX_LEVEL}], got {magnitude}")
        for name, choice in (("autocontrast", autocontrast), ("sharpness", sharpness)):
            if choice not in QUIRK_CHOICES:
                raise ValueError(f"{name} must be one of {QUIRK_CHOICES}, got {choice!r}")
        self.num_ops, self.magnitude, self.prob, self.operations = num_ops, magnitude, prob, operations
        self.autocontrast, self.sharpness = autocontrast, sharpness
        self._table = OPERATIONS | {"AutoContrast": AUTOCONTRAST[autocontrast], "Sharpness": SHARPNESS[sharpness]}

    def __call__(self, image: Image.Image) -> Image.Image:
        for index in torch.randint(len(self.operations), (self.num_ops,)).tolist():
            if torch.rand(()) < self.prob:
                image = self._table[self.operations[index]](image, self.magnitude)
        return image

    def __repr__(self) -> str:
        return (f"RandAugment(num_ops={self.num_ops}, magnitude={self.magnitude}, prob={self.prob}, "
                f"autocontrast={self.autocontrast!r}, sharpness={self.sharpness!r})")


def _rgb(image: Image.Image) -> Image.Image:
    return image.convert("RGB")


def train_transform(image_size: int = 224, autocontrast: QuirkChoice = "reference",
                    sharpness: QuirkChoice = "reference") -> Callable[[Image.Image], torch.Tensor]:
    return transforms.Compose(
        [
            transforms.Lambda(_rgb),
            transforms.RandomResizedCrop(image_size, scale=(0.5, 1.0), interpolation=InterpolationMode.BICUBIC),
            transforms.RandomHorizontalFlip(),
            RandAugment(num_ops=2, magnitude=7, autocontrast=autocontrast, sharpness=sharpness),
            transforms.ToTensor(),
            normalize(),
        ]
    )
