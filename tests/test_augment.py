"""Training augmentation: output layout, reproducibility under a seed, and each RandAugment operation
pixel for pixel against a transcription of the reference's OpenCV/numpy formula, on real RSICD images."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from posapl.preprocess import IMAGE_MEAN, IMAGE_STD
from training.augment import AUTOCONTRAST, OPERATIONS, SHARPNESS, RandAugment, train_transform

FILL = (128, 128, 128)
LEVEL = 7.0
# Real RSICD test images: no channel reaches 0 or 255 in the first three (asserted below), so the
# reference's AutoContrast whitens them entirely and its Sharpness overshoot wraps; port_46 reaches 255.
INSIDE = ("viaduct_408.jpg", "river_403.jpg", "00632.jpg")
MIXED = "baseballfield_60.jpg"  # blue reaches 0, red and green do not


@pytest.fixture(scope="module")
def images(data_dir: Path) -> list[Image.Image]:
    paths = [data_dir / "rsicd" / "test" / "port_46.jpg", data_dir / "ucm" / "images" / "81.tif"]
    return [Image.open(path).convert("RGB") for path in paths]


@pytest.fixture(scope="module")
def rsicd(data_dir: Path):
    def load(name: str) -> np.ndarray:
        return np.asarray(Image.open(data_dir / "rsicd" / "test" / name).convert("RGB"))

    return load


# --- transcriptions of the reference (an OpenCV/numpy RandomAugment) ---------------------------------------


def reference_warp(img: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """cv2.warpAffine(img, M, (W, H), flags=INTER_LINEAR, borderValue=FILL): each output pixel is the bilinear
    sample of the source at M⁻¹(x, y) in pixel-centre coordinates; neighbours outside the image read as FILL."""
    height, width, _ = img.shape
    inverse = np.linalg.inv(np.vstack([np.asarray(matrix, dtype=np.float64), [0, 0, 1]]))
    ys, xs = np.indices((height, width))
    src_x = inverse[0, 0] * xs + inverse[0, 1] * ys + inverse[0, 2]
    src_y = inverse[1, 0] * xs + inverse[1, 1] * ys + inverse[1, 2]
    ix, iy = np.floor(src_x).astype(int), np.floor(src_y).astype(int)
    wx, wy = src_x - ix, src_y - iy
    out = np.zeros(img.shape)
    for dy in (0, 1):
        for dx in (0, 1):
            cx, cy = ix + dx, iy + dy
            inside = (cx >= 0) & (cx < width) & (cy >= 0) & (cy < height)
            value = np.where(inside[..., None], img[cy.clip(0, height - 1), cx.clip(0, width - 1)], np.array(FILL))
            out += ((wx if dx else 1 - wx) * (wy if dy else 1 - wy))[..., None] * value
    return np.rint(out)


def reference_shear_x(factor: float) -> np.ndarray:
    return np.float32([[1, factor, 0], [0, 1, 0]])


def reference_shear_y(factor: float) -> np.ndarray:
    return np.float32([[1, 0, 0], [factor, 1, 0]])


def reference_translate_x(offset: float) -> np.ndarray:
    return np.float32([[1, 0, -offset], [0, 1, 0]])


def reference_translate_y(offset: float) -> np.ndarray:
    return np.float32([[1, 0, 0], [0, 1, -offset]])


def reference_rotation(width: int, height: int, degree: float) -> np.ndarray:
    """cv2.getRotationMatrix2D((W / 2, H / 2), degree, 1)."""
    alpha, beta = math.cos(math.radians(degree)), math.sin(math.radians(degree))
    cx, cy = width / 2, height / 2
    return np.array([[alpha, beta, (1 - alpha) * cx - beta * cy], [-beta, alpha, beta * cx + (1 - alpha) * cy]])


def reference_autocontrast(img: np.ndarray) -> np.ndarray:
    """The reference's tune_channel with cutoff 0, numpy scalar semantics included: `-low` on a uint8 wraps."""
    channels = []
    for ch in np.moveaxis(img, -1, 0):
        high, low = ch.max(), ch.min()
        if high <= low:
            table = np.arange(256)
        else:
            scale = 255 / (high - low)
            with np.errstate(over="ignore"):
                offset = -low * scale
            table = np.arange(256) * scale + offset
        channels.append(table.clip(0, 255).astype(np.uint8)[ch])
    return np.stack(channels, axis=-1)


def reference_sharpness(img: np.ndarray, factor: float, clip: bool = False) -> np.ndarray:
    """filter2D with [[1,1,1],[1,5,1],[1,1,1]]/13 (float32, rounded to uint8), float32 blend on the interior,
    then the reference's unclipped `astype(np.uint8)`, which on x86 keeps the truncated value mod 256."""
    kernel = np.ones((3, 3), dtype=np.float32)
    kernel[1, 1] = 5
    kernel /= 13
    height, width, _ = img.shape
    smooth = np.zeros((height - 2, width - 2, 3), dtype=np.float32)
    for dy in range(3):
        for dx in range(3):
            smooth += kernel[dy, dx] * img[dy : dy + height - 2, dx : dx + width - 2].astype(np.float32)
    degenerate = np.rint(smooth)
    out = img.astype(np.float32)
    out[1:-1, 1:-1] = degenerate + factor * (out[1:-1, 1:-1] - degenerate)
    if clip:
        return out.clip(0, 255).astype(np.uint8)
    return (np.trunc(out).astype(np.int64) % 256).astype(np.uint8)


def reference_equalize(img: np.ndarray) -> np.ndarray:
    """The reference's equalize_func: PIL's equalize written over a 256-bin histogram."""
    channels = []
    for ch in np.moveaxis(img, -1, 0):
        hist = np.bincount(ch.ravel(), minlength=256).astype(np.float32)
        step = np.sum(hist[hist != 0][:-1]) // 255
        if step == 0:
            channels.append(ch)
            continue
        shifted = np.concatenate([[step // 2], hist[:-1]])
        channels.append((np.cumsum(shifted) // step).clip(0, 255).astype(np.uint8)[ch])
    return np.stack(channels, axis=-1)


def reference_brightness(img: np.ndarray, factor: float) -> np.ndarray:
    return (np.arange(256, dtype=np.float32) * factor).clip(0, 255).astype(np.uint8)[img]


def _apply(name: str, img: np.ndarray) -> np.ndarray:
    return np.asarray(OPERATIONS[name](Image.fromarray(img), LEVEL))


def _closest(out: np.ndarray, candidates: list[np.ndarray]) -> int:
    """Largest difference to the nearer of the two random-sign outcomes."""
    return min(int(np.abs(out.astype(int) - c.astype(int)).max()) for c in candidates)


# --- tests --------------------------------------------------------------------------------------------------


def test_the_test_images_have_the_required_ranges(rsicd) -> None:
    for name in INSIDE:
        img = rsicd(name)
        assert img.min(axis=(0, 1)).min() > 0 and img.max(axis=(0, 1)).max() < 255, name
    mins = rsicd(MIXED).min(axis=(0, 1))
    assert mins[2] == 0 and (mins[:2] > 0).all()


@pytest.mark.parametrize("name", ["ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate"])
def test_geometric_operations_match_the_reference_warp(rsicd, name: str) -> None:
    factor, offset, degree = LEVEL / 10 * 0.3, LEVEL / 10 * 10, LEVEL / 10 * 30
    matrices = {
        "ShearX": lambda s, w, h: reference_shear_x(s * factor),
        "ShearY": lambda s, w, h: reference_shear_y(s * factor),
        "TranslateX": lambda s, w, h: reference_translate_x(s * offset),
        "TranslateY": lambda s, w, h: reference_translate_y(s * offset),
        "Rotate": lambda s, w, h: reference_rotation(w, h, s * degree),
    }
    torch.manual_seed(0)
    for image in ("port_46.jpg", *INSIDE):
        img = rsicd(image)
        expected = [reference_warp(img, matrices[name](sign, img.shape[1], img.shape[0])) for sign in (1, -1)]
        for _ in range(2):
            out = _apply(name, img)
            assert _closest(out, expected) <= 1, (name, image)
            if name == "ShearX":  # sheared about the top-left corner: the top row stays, the bottom row moves
                assert np.array_equal(out[0], img[0])
            if name == "ShearY":
                assert np.array_equal(out[:, 0], img[:, 0])


def test_rotation_is_counter_clockwise_about_the_reference_centre(rsicd) -> None:
    """90° about (W/2, H/2) in pixel-centre coordinates is np.rot90 moved down one row, the top row fill."""
    from training.augment import rotation_matrix, warp_affine

    img = rsicd("00632.jpg")
    out = warp_affine(img, rotation_matrix(img.shape[1], img.shape[0], 90.0))
    assert np.array_equal(out[1:], np.rot90(img)[:-1])
    assert (out[0] == 128).all()


def test_shear_moves_the_far_edge_by_factor_times_size(rsicd) -> None:
    from training.augment import shear_matrix, warp_affine

    img = rsicd("viaduct_408.jpg")
    out = warp_affine(img, shear_matrix(0, 0.25))  # bottom row (y = 223) shifts right by 55.75 px
    assert (out[223, :55] == 128).all() and not (out[223, 56:] == 128).all()
    assert np.abs(out[223, 60:].astype(int) - (0.75 * img[223, 4:168] + 0.25 * img[223, 5:169])).max() <= 1


def test_photometric_operations_match_the_reference(rsicd) -> None:
    factor = LEVEL / 10 * 1.8 + 0.1
    for name in ("port_46.jpg", *INSIDE, MIXED):
        img = rsicd(name)
        assert np.array_equal(_apply("Equalize", img), reference_equalize(img)), name
        assert np.array_equal(_apply("Brightness", img), reference_brightness(img, factor)), name
        assert np.array_equal(_apply("Identity", img), img)


def test_autocontrast_reproduces_the_reference_wraparound(rsicd) -> None:
    for name in (*INSIDE, MIXED):
        img = rsicd(name)
        out = _apply("AutoContrast", img)
        assert np.array_equal(out, reference_autocontrast(img)), name
        lows = img.min(axis=(0, 1))
        for channel in range(3):
            if lows[channel] > 0:  # the quirk: a channel whose minimum is above 0 turns white
                assert (out[..., channel] == 255).all()
            else:  # a channel that reaches 0 is stretched correctly, as PIL does
                assert np.array_equal(out[..., channel], np.asarray(ImageOps.autocontrast(Image.fromarray(img)))[
                    ..., channel])
                assert out[..., channel].min() == 0 and out[..., channel].max() >= 254


def test_fixed_autocontrast_is_pils(rsicd) -> None:
    for name in (*INSIDE, MIXED):
        img = rsicd(name)
        fixed = np.asarray(AUTOCONTRAST["fixed"](Image.fromarray(img), LEVEL))
        assert np.array_equal(fixed, np.asarray(ImageOps.autocontrast(Image.fromarray(img)))), name
        # Stretched to the full range (the truncating table can leave the top at 254, as PIL's does).
        assert (fixed.min(axis=(0, 1)) == 0).all() and (fixed.max(axis=(0, 1)) >= 254).all()


def test_sharpness_reproduces_the_reference_uint8_wraparound(rsicd) -> None:
    factor = LEVEL / 10 * 1.8 + 0.1
    wrapped_total = 0
    for name in INSIDE[:2]:
        img = rsicd(name)
        reference = _apply("Sharpness", img)
        fixed = np.asarray(SHARPNESS["fixed"](Image.fromarray(img), LEVEL))
        assert np.array_equal(reference, reference_sharpness(img, factor)), name
        assert np.array_equal(fixed, reference_sharpness(img, factor, clip=True)), name
        # The two differ exactly where the blend left 0..255; there a bright pixel wrapped to a dark one.
        differs = reference != fixed
        wrapped_total += int(differs.sum())
        assert (np.minimum(fixed[differs], 255 - fixed[differs]) == 0).all()
        assert (np.abs(reference[differs].astype(int) - fixed[differs].astype(int)) > 128).all()
        assert np.array_equal(reference[0], img[0]) and np.array_equal(reference[:, -1], img[:, -1])
    assert wrapped_total > 20


def test_train_transform_shape_and_normalisation(images: list[Image.Image]) -> None:
    transform = train_transform(224)
    for image in images:
        out = transform(image)
        assert out.shape == (3, 224, 224) and out.dtype == torch.float32
    normalise = transform.transforms[-1]
    assert (tuple(normalise.mean), tuple(normalise.std)) == (IMAGE_MEAN, IMAGE_STD)
    augment = transform.transforms[3]
    assert (augment.autocontrast, augment.sharpness) == ("reference", "reference")
    augment = train_transform(224, autocontrast="fixed", sharpness="fixed").transforms[3]
    assert (augment.autocontrast, augment.sharpness) == ("fixed", "fixed")


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


def test_rand_augment_applies_the_chosen_operations(rsicd) -> None:
    image = Image.new("RGB", (32, 32), (10, 200, 30))
    image.putpixel((0, 0), (255, 255, 255))
    always_rotate = RandAugment(num_ops=2, magnitude=7, prob=1.0, operations=("Rotate",))
    never = RandAugment(num_ops=2, magnitude=7, prob=0.0)
    torch.manual_seed(0)
    assert always_rotate(image).tobytes() != image.tobytes()
    assert never(image).tobytes() == image.tobytes()

    inside = Image.fromarray(rsicd(INSIDE[0]))
    for choice, expected in (("reference", reference_autocontrast(np.asarray(inside))),
                             ("fixed", np.asarray(ImageOps.autocontrast(inside)))):
        once = RandAugment(num_ops=1, magnitude=7, prob=1.0, operations=("AutoContrast",), autocontrast=choice)
        assert np.array_equal(np.asarray(once(inside)), expected)


def test_rand_augment_rejects_bad_configuration() -> None:
    with pytest.raises(ValueError, match="unknown augmentation operations"):
        RandAugment(operations=("Solarize",))
    with pytest.raises(ValueError, match="magnitude"):
        RandAugment(magnitude=11)
    with pytest.raises(ValueError, match="sharpness"):
        RandAugment(sharpness="clipped")
