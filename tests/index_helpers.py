"""Shared pieces of the index tests: settings for the tiny random model and hostile files."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import rasterio
import tifffile
from PIL import Image
from rasterio.transform import from_origin

from index.settings import IndexSettings

DATA = Path(os.environ.get("POSAPL_TEST_DATA") or Path(__file__).resolve().parents[1].parent / "shared" / "data")
RSICD_TEST = DATA / "rsicd" / "test"


def tiny_settings(root: Path, arch: Path, images: list[Path] | None = None, **extra: object) -> IndexSettings:
    values: dict[str, object] = dict(
        root=root,
        images=images,
        pretrained="random",
        arch=str(arch),
        preset="rsicd",
        device="cpu",
        batch_size=16,
        num_workers=0,
        progress=False,
        hash_threads=2,
    )
    values.update(extra)
    return IndexSettings(**values)


def copy_images(names: list[str], target: Path) -> list[Path]:
    target.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copy2(RSICD_TEST / name, target / name)) for name in names]


def rsicd_names(count: int, start: int = 0) -> list[str]:
    return sorted(p.name for p in RSICD_TEST.glob("*.jpg"))[start : start + count]


def write_geotiff(path: Path, height: int = 48, width: int = 64) -> np.ndarray:
    """16-bit, 4-band GeoTIFF in UTM 33N with 10 m pixels whose top-left corner is (500000, 4000000)."""
    data = np.random.default_rng(7).integers(0, 60000, size=(4, height, width), dtype=np.uint16)
    tifffile.imwrite(
        path,
        data,
        photometric="minisblack",
        planarconfig="separate",
        extratags=[
            (33550, "d", 3, (10.0, 10.0, 0.0), False),  # ModelPixelScale
            (33922, "d", 6, (0.0, 0.0, 0.0, 500000.0, 4000000.0, 0.0), False),  # ModelTiepoint
            (34735, "H", 16, (1, 1, 0, 3, 1024, 0, 1, 1, 1025, 0, 1, 1, 3072, 0, 1, 32633), False),  # GeoKeys
        ],
    )
    return data


def write_bad_files(folder: Path) -> dict[str, str]:
    """Files that must be skipped, by name, with a word their reason must contain."""
    folder.mkdir(parents=True, exist_ok=True)
    good = (RSICD_TEST / rsicd_names(1)[0]).read_bytes()
    (folder / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.jpg").write_text("this is not an image\n")
    Image.new("L", (3000, 3000)).save(folder / "bomb.png")  # 9 Mpx, over the tests' 4 Mpx limit
    (folder / "broken.tif").write_bytes(b"II*\x00" + b"\xff" * 64)
    return {
        "truncated.jpg": "",
        "empty.jpg": "zero-byte",
        "notes.jpg": "not an image",
        "bomb.png": "decompression bomb",
        "broken.tif": "TIFF",
    }


def anchored_scene(height: int, width: int, seed: int) -> np.ndarray:
    """4-band uint16 texture in 2000..8000 with a lattice of every tenth pixel at 1000 or 9000, so the scene's
    2nd/98th percentile stretch is exactly (1000, 9000) whatever texture a small rewrite puts in."""
    rng = np.random.default_rng(seed)
    data = rng.integers(2000, 8000, size=(4, height, width), dtype=np.uint16)
    ys, xs = np.mgrid[0:height, 0:width]
    data[:, (xs + ys) % 10 == 0] = 1000
    data[:, (xs + ys) % 10 == 5] = 9000
    return data


def write_uint16_scene(path: Path, data: np.ndarray) -> None:
    """A tiled, deflated UTM GeoTIFF of `data` (bands, rows, columns), written whole as a producer would."""
    count, height, width = data.shape
    with rasterio.open(
        path, "w", driver="GTiff", width=width, height=height, count=count, dtype=data.dtype, crs="EPSG:32633",
        transform=from_origin(500000, 4000000, 10, 10), tiled=True, blockxsize=128, blockysize=128, compress="deflate",
    ) as out:
        out.write(data)


def rewrite_region(path: Path, data: np.ndarray, region: tuple[int, int, int, int], seed: int) -> np.ndarray:
    """Rewrite the scene at `path` with fresh texture in `region` (x, y, width, height); returns the new data."""
    x, y, width, height = region
    changed = data.copy()
    changed[:, y : y + height, x : x + width] = anchored_scene(*data.shape[1:], seed)[:, y : y + height, x : x + width]
    write_uint16_scene(path, changed)
    return changed


def intersecting(windows: list[tuple[int, int, int, int]], region: tuple[int, int, int, int]) -> set:
    """The windows that share at least one pixel with `region`."""
    x, y, width, height = region
    return {w for w in windows if w[0] < x + width and x < w[0] + w[2] and w[1] < y + height and y < w[1] + w[3]}
