"""One decode path: uploading any archive file finds that file first with score >= 0.999, whatever its format,
bit depth or band count; thumbnails and views of every such file render, and no error names a server path."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import rasterio
from api_support import DATA, LiveServer, build_index, model_env, start_server
from PIL import Image

from index.layout import content_id, file_sha256

SIZE = 96


def _sources(count: int) -> list[np.ndarray]:
    names = sorted((DATA / "rsicd" / "test").glob("*.jpg"))[200 : 200 + count]
    return [np.asarray(Image.open(p).convert("RGB").resize((SIZE, SIZE - 16))) for p in names]


def _tiff(path: Path, data: np.ndarray, **profile: object) -> None:
    """(bands, h, w) array -> a plain (non-georeferenced) TIFF written by GDAL."""
    count, height, width = data.shape
    options = dict(driver="GTiff", width=width, height=height, count=count, dtype=data.dtype, **profile)
    with rasterio.open(path, "w", **options) as out:
        out.write(data)


def write_archive(folder: Path) -> list[Path]:
    """JPEG, PNG (RGB, grey, palette, RGBA), TIFF 8/16-bit and float with 1 to 8 bands, from RSICD pixels."""
    folder.mkdir(parents=True)
    rgb = _sources(12)
    Image.fromarray(rgb[0]).save(folder / "photo.jpg", quality=90)
    Image.fromarray(rgb[1]).save(folder / "rgb.png")
    Image.fromarray(rgb[2]).convert("L").save(folder / "grey.png")
    Image.fromarray(rgb[3]).convert("P", palette=Image.Palette.ADAPTIVE, colors=64).save(folder / "palette.png")
    rgba = np.dstack([rgb[4], np.where(np.arange(SIZE)[None, :] < SIZE // 2, 255, 0).repeat(SIZE - 16, 0)])
    Image.fromarray(rgba.astype(np.uint8), mode="RGBA").save(folder / "alpha.png")
    wide = (np.moveaxis(rgb[5], -1, 0).astype(np.uint16) * 97 + 300).astype(np.uint16)
    _tiff(folder / "rgb16.tif", wide)
    _tiff(folder / "rgb8.tif", np.moveaxis(rgb[6], -1, 0).copy())
    _tiff(folder / "grey16.tif", wide[:1].copy())
    _tiff(folder / "two-band.tif", np.moveaxis(rgb[7], -1, 0)[:2].copy())
    four = np.concatenate([np.moveaxis(rgb[8], -1, 0), np.moveaxis(rgb[8], -1, 0)[:1] // 2])
    _tiff(folder / "four-band8.tif", four)
    eight = np.concatenate([np.moveaxis(rgb[9], -1, 0), np.moveaxis(rgb[10], -1, 0), np.moveaxis(rgb[11], -1, 0)[:2]])
    _tiff(folder / "eight-band16.tif", (eight.astype(np.uint16) * 251).astype(np.uint16), compress="deflate")
    _tiff(folder / "float.tif", (np.moveaxis(rgb[11], -1, 0).astype(np.float32) / 255.0 - 0.3), compress="lzw")
    return sorted(folder.iterdir())


@pytest.fixture(scope="module")
def mixed_server(tmp_path_factory: pytest.TempPathFactory, tiny_arch_file: Path) -> Iterator[tuple[LiveServer, list]]:
    tmp = tmp_path_factory.mktemp("mixed")
    files = write_archive(tmp / "images")
    captions = tmp / "captions.json"
    captions.write_text('[{"image": "photo.jpg", "caption": ["a test image ."]}]')
    build_index(tmp / "index", tmp / "images", captions, tiny_arch_file)
    env = {**model_env(tiny_arch_file), "POSAPL_INDEX_ROOT": str(tmp / "index"), "POSAPL_RERANK_DEFAULT": "none"}
    live = start_server(tmp, "mixed", env)
    yield live, files
    live.stop()


def test_every_archive_file_finds_itself(mixed_server: tuple[LiveServer, list[Path]]) -> None:
    live, files = mixed_server
    assert len(files) == 12
    with httpx.Client(base_url=live.url, timeout=60) as client:
        for path in files:
            response = client.post(
                "/v1/search/image", files={"file": (path.name, path.read_bytes())}, data={"k_images": "3"}
            )
            assert response.status_code == 200, (path.name, response.text)
            best = response.json()["images"][0]
            assert best["id"] == content_id(file_sha256(path)), path.name
            assert best["score"] >= 0.999, (path.name, best["score"])


def test_unreadable_archive_file_error_names_no_path(mixed_server: tuple[LiveServer, list[Path]]) -> None:
    live, files = mixed_server
    target = next(p for p in files if p.name == "rgb16.tif")
    image_id = content_id(file_sha256(target))
    saved = target.read_bytes()
    target.write_bytes(saved[:200])  # the file was damaged after indexing
    try:
        with httpx.Client(base_url=live.url, timeout=60) as client:
            for kind in ("thumbnail", "view"):
                response = client.get(f"/v1/images/{image_id}/{kind}")
                assert response.status_code == 422, response.text
                message = response.json()["message"]
                assert str(target.parent) not in message and "rgb16.tif" in message, message
    finally:
        target.write_bytes(saved)


def test_thumbnails_and_views_render_every_file(mixed_server: tuple[LiveServer, list[Path]]) -> None:
    live, files = mixed_server
    web = {".jpg", ".png"}
    with httpx.Client(base_url=live.url, timeout=60) as client:
        for path in files:
            image_id = content_id(file_sha256(path))
            thumb = client.get(f"/v1/images/{image_id}/thumbnail")
            view = client.get(f"/v1/images/{image_id}/view")
            assert thumb.status_code == 200 and view.status_code == 200, path.name
            if path.suffix in web:
                assert thumb.content == path.read_bytes() == view.content, "a small web image is its own thumbnail"
                continue
            assert thumb.headers["content-type"] == "image/jpeg" and view.headers["content-type"] == "image/png"
            shown = Image.open(io.BytesIO(view.content))
            assert shown.size == (SIZE, SIZE - 16)
            assert np.asarray(shown).mean() > 40, f"{path.name}: the view must not be almost black"
            assert client.get(f"/v1/images/{image_id}").content == path.read_bytes(), "the original stays"
