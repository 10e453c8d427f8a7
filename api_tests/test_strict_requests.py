"""Strict request handling: body size limit, JSON syntax vs validation, Content-Type, strict numbers,
unknown GET parameters, canonical image ids, no server paths in messages, and route labels in /metrics."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest
from api_support import LiveServer

JSON = {"Content-Type": "application/json"}
LIMIT = 64 * 1024


def test_body_over_the_limit_is_refused_before_it_is_read(client: httpx.Client) -> None:
    body = b'{"query": "' + b"a" * (LIMIT + 10) + b'"}'
    response = client.post("/v1/search/text", content=body, headers=JSON)
    assert response.status_code == 413, response.text
    assert str(LIMIT) in response.json()["message"]


def test_chunked_body_is_refused_before_it_ends(server: LiveServer) -> None:
    """Send a chunked body past the limit and never finish it: the 413 must come while the body is open."""
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        sock.sendall(
            b"POST /v1/search/text HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b'{"query": "' + b"a" * 16373
        for _ in range(LIMIT // len(chunk) + 2):
            sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            chunk = b"a" * 16384
        head = sock.recv(4096)  # no terminating 0-chunk was sent: only a streaming check can answer now
    assert head.startswith(b"HTTP/1.1 413"), head[:200]


def test_body_under_the_limit_with_spaces_is_fine(client: httpx.Client) -> None:
    body = b'{"query": "a river"' + b" " * (LIMIT // 2) + b"}"
    assert client.post("/v1/search/text", content=body, headers=JSON).status_code == 200


@pytest.mark.parametrize("raw", [b"not json at all", b'{"query": }', b'{"query": "river"'], ids=["text", "gap", "open"])
def test_malformed_json_is_a_400_that_says_so(client: httpx.Client, raw: bytes) -> None:
    response = client.post("/v1/search/text", content=raw, headers=JSON)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_json"
    assert "not valid JSON" in response.json()["message"]


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_json_without_the_json_content_type_names_the_header(client: httpx.Client, content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    request = client.build_request("POST", "/v1/search/text", content=b'{"query": "a river"}', headers=headers)
    if content_type is None and "Content-Type" in request.headers:
        del request.headers["Content-Type"]
    response = client.send(request)
    assert response.status_code == 415, response.text
    assert "Content-Type: application/json" in response.json()["message"]


def test_json_content_type_with_charset_is_accepted(client: httpx.Client) -> None:
    headers = {"Content-Type": "application/json; charset=utf-8"}
    assert client.post("/v1/search/text", content=b'{"query": "a river"}', headers=headers).status_code == 200


@pytest.mark.parametrize(
    ("body", "hint"),
    [
        ({"query": "river", "k": "5"}, "without quotes"),
        ({"query": "river", "k": True}, "boolean"),
        ({"query": "river", "k": 5.5}, "integer"),
        ({"query": "river", "filters": {"min_mtime": "0"}}, "without quotes"),
        ({"query": "river", "filters": {"max_mtime": False}}, "boolean"),
        ({"query": "river", "filters": {"bbox": ["0", 0, 1, 1]}}, "without quotes"),
    ],
    ids=["k-string", "k-bool", "k-float", "mtime-string", "mtime-bool", "bbox-string"],
)
def test_numbers_are_strict(client: httpx.Client, body: dict, hint: str) -> None:
    response = client.post("/v1/search/text", json=body)
    assert response.status_code == 422, response.text
    assert hint in response.json()["message"]


def test_strict_numbers_still_accept_numbers(client: httpx.Client) -> None:
    body = {"query": "river", "k": 3, "filters": {"min_mtime": 0, "max_mtime": 4e9}}
    response = client.post("/v1/search/text", json=body)
    assert response.status_code == 200 and len(response.json()["results"]) == 3


@pytest.mark.parametrize("extra", ["intersects=x", "min_mtime=5", "K=3", "q2=x"])
def test_get_refuses_unknown_parameters_by_name(client: httpx.Client, extra: str) -> None:
    response = client.get(f"/v1/search/text?q=river&{extra}")
    assert response.status_code == 422, response.text
    assert repr(extra.split("=")[0]) in response.json()["message"]


@pytest.mark.parametrize("query_string", ["q=river&q=lake", "q=river&k=3&k=50"])
def test_get_refuses_repeated_parameters(client: httpx.Client, query_string: str) -> None:
    response = client.get(f"/v1/search/text?{query_string}")
    assert response.status_code == 422, response.text
    assert "more than once" in response.json()["message"]


@pytest.mark.parametrize("q", ["%01river", "river%7F", "%E2%80%8B%E2%80%8B"], ids=["soh", "del", "zero-width"])
def test_get_query_text_is_cleaned_like_post(client: httpx.Client, q: str) -> None:
    response = client.get(f"/v1/search/text?q={q}")
    assert response.status_code == 422, response.text


@pytest.mark.parametrize(
    "spelling", ["+{id}", "%20%20{id}", "{id}%20", "0{id}", "{id}.0", "{id}_0", "-0", "00", "\u0661\u0662", "1e3"]
)
def test_only_canonical_image_ids_resolve(
    client: httpx.Client, indexed_image: tuple[int, Path], spelling: str
) -> None:
    image_id = indexed_image[0]
    if "_0" in spelling:
        spelling = "{id}".replace("{id}", f"{str(image_id)[:3]}_{str(image_id)[3:]}")
    path = spelling.replace("{id}", str(image_id))
    for url in (f"/v1/images/{path}", f"/v1/images/{path}/thumbnail"):
        response = client.get(url)
        assert response.status_code == 422, (url, response.text)
        assert response.json()["error"] == "invalid_image_id"
        assert "cache-control" not in response.headers


def test_canonical_ids_still_resolve(client: httpx.Client, indexed_image: tuple[int, Path]) -> None:
    assert client.get(f"/v1/images/{indexed_image[0]}").status_code == 200
    assert client.get("/v1/images/0").status_code == 404


def test_no_message_shows_a_server_path(client: httpx.Client, server: LiveServer, indexed_image) -> None:
    """A bad request against every endpoint; no message may contain the archive, index or temp folders."""
    archive_folder = str(indexed_image[1].parent)
    responses = [
        client.post("/v1/search/text", json={"query": "\x01"}),
        client.post("/v1/search/text", content=b"{", headers=JSON),
        client.post("/v1/search/image", files={"file": ("x.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "image/png")}),
        client.get("/v1/search/text?q=river&bbox=1"),
        client.get("/v1/images/+1"),
    ]
    for response in responses:
        assert 400 <= response.status_code < 500, response.text
        assert archive_folder not in response.text and str(server.tmpdir) not in response.text


def _labels(client: httpx.Client) -> str:
    return client.get("/metrics").text


def test_documentation_pages_have_their_own_route_labels(client: httpx.Client) -> None:
    for path in ("/docs", "/openapi.json", "/redoc", "/docs/oauth2-redirect", "/favicon.ico"):
        assert client.get(path).status_code == 200, path
    text = _labels(client)
    for path in ("/docs", "/openapi.json", "/redoc", "/docs/oauth2-redirect", "/favicon.ico"):
        assert f'route="{path}"' in text, path
    client.post("/v1/search/text", content=b'{"query": "' + b"a" * (LIMIT + 1) + b'"}', headers=JSON)
    lines = _labels(client).splitlines()
    assert any('route="/v1/search/text"' in line and 'status="413"' in line for line in lines)


def test_favicon_is_an_icon(client: httpx.Client) -> None:
    response = client.get("/favicon.ico")
    assert response.status_code == 200 and response.headers["content-type"] == "image/x-icon"
    assert response.content[:4] == b"\x00\x00\x01\x00"


@pytest.mark.parametrize("k", ["+5", "05", "5_0", "5.0", "%205", "\u0665"])
def test_get_k_only_in_plain_decimal(client: httpx.Client, k: str) -> None:
    response = client.get(f"/v1/search/text?q=river&k={k}")
    assert response.status_code == 422, response.text
    assert "plain decimal digits" in response.json()["message"]


@pytest.mark.parametrize("value", ["+3", "03", "1_0", "3.0", "\u0663"])
def test_form_numbers_only_in_plain_decimal(client: httpx.Client, indexed_image: tuple[int, Path], value: str) -> None:
    data = indexed_image[1].read_bytes()
    response = client.post(
        "/v1/search/image", files={"file": ("x.jpg", data, "image/jpeg")}, data={"k_images": value}
    )
    assert response.status_code == 422, response.text
    assert "k_images" in response.json()["message"]


def test_upload_response_has_a_small_jpeg_preview(client: httpx.Client, indexed_image: tuple[int, Path]) -> None:
    import base64
    import io

    from PIL import Image

    data = indexed_image[1].read_bytes()
    body = client.post("/v1/search/image", files={"file": ("x.jpg", data, "image/jpeg")}, data={"k_images": "0"}).json()
    prefix = "data:image/jpeg;base64,"
    assert body["preview"].startswith(prefix)
    preview = Image.open(io.BytesIO(base64.b64decode(body["preview"][len(prefix) :])))
    assert preview.format == "JPEG" and max(preview.size) <= 256 and preview.size[0] > 0


@pytest.mark.parametrize(
    ("files", "needle"),
    [
        ({"k_image": (None, "3")}, "unknown form field 'k_image'"),
        ({"other": ("a.txt", b"x")}, "unknown form field 'other'"),
        ({"k_images": ("k.txt", b"3")}, "'k_images' is a text field, not a file"),
    ],
    ids=["misspelt-field", "unknown-file", "field-as-file"],
)
def test_upload_form_refuses_parts_it_does_not_read(
    client: httpx.Client, indexed_image: tuple[int, Path], files: dict, needle: str
) -> None:
    image = ("x.jpg", indexed_image[1].read_bytes(), "image/jpeg")
    response = client.post("/v1/search/image", files={"file": image, **files})
    assert response.status_code == 422, response.text
    assert needle in response.json()["message"]
    if needle.startswith("unknown"):
        assert "this form takes file, k_captions, k_images, rerank, dedupe_overlaps" in response.json()["message"]


def test_upload_form_refuses_two_files(client: httpx.Client, indexed_image: tuple[int, Path]) -> None:
    image = ("x.jpg", indexed_image[1].read_bytes(), "image/jpeg")
    response = client.post("/v1/search/image", files=[("file", image), ("file", image)])
    assert response.status_code == 422, response.text
    assert "form field 'file' is given more than once" in response.json()["message"]
    twice = [("file", image), ("k_images", (None, "1")), ("k_images", (None, "2"))]
    response = client.post("/v1/search/image", files=twice)
    assert response.status_code == 422 and "'k_images' is given more than once" in response.json()["message"]


def _image_and_scene_urls(image_id: int) -> list[str]:
    """Every GET route of the image and scene routers; a whole small image is its own scene (same id)."""
    return [
        f"/v1/images/{image_id}", f"/v1/images/{image_id}/thumbnail", f"/v1/images/{image_id}/view",
        f"/v1/scenes/{image_id}", f"/v1/scenes/{image_id}/overview", f"/v1/scenes/{image_id}/original",
    ]


@pytest.mark.parametrize("extra", ["size=64", "format=png", "q=river"])
def test_image_and_scene_routes_refuse_unknown_parameters(
    client: httpx.Client, indexed_image: tuple[int, Path], extra: str
) -> None:
    for url in _image_and_scene_urls(indexed_image[0]):
        assert client.get(url).status_code == 200, url
        response = client.get(f"{url}?{extra}")
        assert response.status_code == 422, (url, response.text)
        assert repr(extra.split("=")[0]) in response.json()["message"] and "takes no query parameters" in response.text


def test_post_search_routes_take_only_format(client: httpx.Client, indexed_image: tuple[int, Path]) -> None:
    response = client.post("/v1/search/text?k=3", json={"query": "river"})
    assert response.status_code == 422 and "'k'" in response.json()["message"], response.text
    image = ("x.jpg", indexed_image[1].read_bytes(), "image/jpeg")
    response = client.post("/v1/search/image?k_images=3", files={"file": image})
    assert response.status_code == 422 and "'k_images'" in response.json()["message"], response.text
    assert client.post("/v1/search/text?format=json", json={"query": "river"}).status_code == 200


def test_head_answers_every_get_route_with_the_get_headers(
    client: httpx.Client, indexed_image: tuple[int, Path]
) -> None:
    for url in [*_image_and_scene_urls(indexed_image[0]), "/healthz", "/readyz", "/v1/index", "/", "/favicon.ico",
                "/openapi.json"]:
        got, head = client.get(url), client.head(url)
        assert (head.status_code, got.status_code) == (200, 200), url
        assert head.content == b"", url
        for name in ("content-type", "content-length", "cache-control"):
            assert head.headers.get(name) == got.headers.get(name), (url, name)
    # a search answers too (its length varies with the timings, so only status and type are compared)
    head = client.head("/v1/search/text?q=river&k=2")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-type"] == "application/json"
    # refusals keep their status; a route without GET still says which methods it has
    assert client.head("/v1/search/text?q=river&nope=1").status_code == 422
    assert client.head("/v1/images/+1").status_code == 422
    refused = client.head("/v1/search/image")
    assert refused.status_code == 405 and "POST" in refused.headers["allow"]
