"""POST /v1/search/image: uploads in every shape a client may send, good and hostile."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import httpx
import numpy as np
import pytest
from api_support import LiveServer
from PIL import Image


def upload(client: httpx.Client, data: bytes, name: str = "upload.jpg", **fields) -> httpx.Response:
    return client.post("/v1/search/image", files={"file": (name, data)}, data={k: str(v) for k, v in fields.items()})


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **options)
    return out.getvalue()


def test_archive_image_finds_itself_and_captions(client: httpx.Client, indexed_image: tuple[int, Path]) -> None:
    image_id, path = indexed_image
    response = upload(client, path.read_bytes(), k_captions=4, k_images=3)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["width"], body["height"]) == (224, 224)
    assert len(body["captions"]) == 4
    assert all(c["text"] and c["source"] == "captions.json" for c in body["captions"])
    assert len({c["text"] for c in body["captions"]}) == 4, "repeated caption texts are merged"
    assert len(body["images"]) == 3
    assert body["images"][0]["id"] == image_id
    assert body["images"][0]["score"] == pytest.approx(1.0, abs=1e-3)
    assert set(body["timings_ms"]) == {"decode", "encode", "search", "rerank", "total"}


def test_defaults_and_zero_images(client: httpx.Client, indexed_image: tuple[int, Path]) -> None:
    data = indexed_image[1].read_bytes()
    assert len(upload(client, data).json()["captions"]) == 5
    assert upload(client, data, k_images=0).json()["images"] == []


@pytest.mark.parametrize("fmt", ["PNG", "TIFF", "WEBP", "BMP"])
def test_other_formats(client: httpx.Client, indexed_image: tuple[int, Path], fmt: str) -> None:
    image = Image.open(indexed_image[1]).convert("RGB")
    response = upload(client, encoded(image, fmt), name=f"x.{fmt.lower()}", k_images=1)
    assert response.status_code == 200, response.text


def test_16_bit_grayscale(client: httpx.Client) -> None:
    data = (np.arange(64 * 48, dtype=np.uint16).reshape(48, 64) * 20).astype(np.uint16)
    response = upload(client, encoded(Image.fromarray(data), "PNG"), name="x.png")
    assert response.status_code == 200, response.text
    assert (response.json()["width"], response.json()["height"]) == (64, 48)


def test_animated_gif_uses_first_frame(client: httpx.Client) -> None:
    frames = [Image.new("RGB", (40, 30), colour) for colour in ("red", "green", "blue")]
    data = encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    response = upload(client, data, name="x.gif")
    assert response.status_code == 200, response.text
    assert (response.json()["width"], response.json()["height"]) == (40, 30)


def test_multi_page_tiff_uses_first_page(client: httpx.Client) -> None:
    pages = [Image.new("RGB", (64, 48), "white"), Image.new("RGB", (16, 16), "black")]
    response = upload(client, encoded(pages[0], "TIFF", save_all=True, append_images=pages[1:]), name="x.tif")
    assert response.status_code == 200, response.text
    assert (response.json()["width"], response.json()["height"]) == (64, 48)


def _png_bomb(width: int, height: int) -> bytes:
    """A valid PNG header announcing width x height pixels, with a tiny all-zero compressed body."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    body = zlib.compress(b"\x00" * (1 + (width + 7) // 8) * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def test_decompression_bomb_is_refused(client: httpx.Client) -> None:
    response = upload(client, _png_bomb(20_000, 20_000), name="bomb.png")
    assert response.status_code == 413, response.text
    assert response.json()["error"] == "decompression_bomb"
    # the limit quoted is the configured POSAPL_MAX_IMAGE_PIXELS, not Pillow's own (178956970)
    assert "limit of 40000000" in response.json()["message"] and "178956970" not in response.json()["message"]


def test_upload_over_limit_is_refused_with_content_length(client: httpx.Client) -> None:
    response = upload(client, b"\xff" * (20 * 1024 * 1024 + 1), name="big.jpg")
    assert response.status_code == 413, response.text
    assert response.json()["error"] == "upload_too_large"


def test_upload_over_limit_is_refused_while_streaming(client: httpx.Client) -> None:
    """Chunked upload without Content-Length: the limit is enforced on the bytes as they arrive."""
    boundary = "streamboundary"

    def body():
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        for _ in range(25):
            yield b"\x00" * (1024 * 1024)
        yield f"\r\n--{boundary}--\r\n".encode()

    response = client.post(
        "/v1/search/image", content=body(), headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    assert response.status_code == 413, response.text


BAD_UPLOADS = {
    "not an image": (b"%PDF-1.4 definitely not a picture", 415),
    "empty file": (b"", 422),
    "random bytes": (bytes(range(256)) * 40, 415),
}


@pytest.mark.parametrize(("data", "status"), BAD_UPLOADS.values(), ids=BAD_UPLOADS.keys())
def test_bad_files(client: httpx.Client, data: bytes, status: int) -> None:
    response = upload(client, data)
    assert response.status_code == status, response.text
    assert response.json()["message"]


def test_truncated_image(client: httpx.Client, indexed_image: tuple[int, Path]) -> None:
    data = indexed_image[1].read_bytes()
    response = upload(client, data[: len(data) // 2])
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "corrupt_image"


@pytest.mark.parametrize(
    "fields",
    [
        {"k_captions": 0},
        {"k_captions": 101},
        {"k_images": -1},
        {"k_images": 101},
        {"k_captions": "many"},
        {"rerank": "magic"},
    ],
    ids=["kc0", "kc101", "ki-1", "ki101", "kc-text", "rerank"],
)
def test_bad_form_fields(client: httpx.Client, indexed_image: tuple[int, Path], fields: dict) -> None:
    response = upload(client, indexed_image[1].read_bytes(), **fields)
    assert response.status_code == 422, response.text


def test_missing_file_part(client: httpx.Client) -> None:
    response = client.post("/v1/search/image", files={"k_images": (None, "3")})
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "missing_file"


def test_not_multipart(client: httpx.Client) -> None:
    response = client.post("/v1/search/image", json={"file": "abc"})
    assert response.status_code == 415


def test_malformed_multipart(client: httpx.Client) -> None:
    response = client.post(
        "/v1/search/image",
        content=b"--b\r\ngarbage without headers",
        headers={"Content-Type": "multipart/form-data; boundary=b"},
    )
    assert 400 <= response.status_code < 500, response.text


def test_uploads_never_touch_disk(client: httpx.Client, server: LiveServer, indexed_image: tuple[int, Path]) -> None:
    """A multi-megabyte upload (which UploadFile would spool) adds nothing to the server's TMPDIR. Libraries may
    leave their own files there at start-up (the encoder runtime does), so the check compares before and after."""
    noise = np.random.default_rng(0).integers(0, 256, (1200, 1200, 3), dtype=np.uint8)
    data = encoded(Image.fromarray(noise), "PNG")
    assert len(data) > 2 * 1024 * 1024
    before = sorted(server.tmpdir.rglob("*"))
    assert upload(client, data, name="noise.png").status_code == 200
    assert sorted(server.tmpdir.rglob("*")) == before
