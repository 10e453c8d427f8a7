"""GET /v1/images/{id} and /thumbnail: bytes by id only, never by path."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import pytest
from PIL import Image


def test_original_bytes_and_type(client: httpx.Client, indexed_image: tuple[int, Path]) -> None:
    image_id, path = indexed_image
    response = client.get(f"/v1/images/{image_id}")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/jpeg"
    assert response.content == path.read_bytes()


def test_thumbnail_is_a_small_jpeg_and_cached(client: httpx.Client, indexed_image: tuple[int, Path]) -> None:
    image_id, _ = indexed_image
    first = client.get(f"/v1/images/{image_id}/thumbnail")
    assert first.status_code == 200 and first.headers["content-type"] == "image/jpeg"
    thumb = Image.open(io.BytesIO(first.content))
    assert thumb.format == "JPEG" and max(thumb.size) <= 256
    assert "max-age" in first.headers["cache-control"]
    assert client.get(f"/v1/images/{image_id}/thumbnail").content == first.content


def test_search_result_links_resolve(client: httpx.Client) -> None:
    hit = client.get("/v1/search/text", params={"q": "a baseball field", "k": 1}).json()["results"][0]
    assert client.get(hit["image_url"]).status_code == 200
    assert client.get(hit["thumbnail_url"]).status_code == 200


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/v1/images/12345", 404),
        ("/v1/images/12345/thumbnail", 404),
        ("/v1/images/-1", 422),
        ("/v1/images/99999999999999999999999", 422),
        ("/v1/images/abc", 422),
        ("/v1/images/..%2F..%2Fetc%2Fpasswd", 404),
        ("/v1/images/%2Fetc%2Fpasswd/thumbnail", 404),
    ],
)
def test_unknown_or_invalid_ids(client: httpx.Client, path: str, status: int) -> None:
    response = client.get(path)
    assert response.status_code == status, response.text
    assert response.json()["message"]
