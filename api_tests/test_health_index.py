"""Liveness, readiness, index info, metrics, the web page and the OpenAPI document."""

from __future__ import annotations

import httpx
from api_support import N_IMAGES


def test_healthz(client: httpx.Client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_reports_live_version(client: httpx.Client) -> None:
    body = client.get("/readyz").json()
    assert body["ready"] is True
    assert body["index_version"] >= 1


def test_index_info_matches_the_built_index(client: httpx.Client) -> None:
    info = client.get("/v1/index").json()
    assert info["images"] == N_IMAGES
    assert info["captions"] == 5 * N_IMAGES
    assert info["embedding_dim"] == 32
    assert len(info["model_fingerprint"]) == 64
    assert info["created"].startswith("20")
    index = info["image_index"]  # what an item costs: its codes in RAM and its float vector on disk
    assert index["kind"] == "flat" and index["bytes_per_item"] >= 4 * 32
    assert index["vector_file_bytes_per_item"] >= 4 * 32


def test_metrics_expose_routes_stages_version_and_batches(client: httpx.Client) -> None:
    assert client.get("/v1/search/text", params={"q": "a river near a bridge"}).status_code == 200
    text = client.get("/metrics").text
    assert 'posapl_http_requests_total{method="GET",route="/v1/search/text",status="200"}' in text
    assert 'posapl_http_request_duration_seconds_bucket{le="0.001",method="GET",route="/v1/search/text"}' in text
    for stage in ("pos", "encode", "search", "rerank"):
        assert f'posapl_stage_duration_seconds_count{{pipeline="text",stage="{stage}"}}' in text
    assert 'posapl_batch_size_count{batcher="text"}' in text
    version = client.get("/v1/index").json()["version"]
    assert f"posapl_index_version {float(version)}" in text


def test_unknown_route_is_json_404(client: httpx.Client) -> None:
    response = client.get("/v1/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def test_web_page_and_static_files(client: httpx.Client) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert 'id="query"' in page.text
    for name, kind in (("app.js", "javascript"), ("app.css", "text/css")):
        response = client.get(f"/static/{name}")
        assert response.status_code == 200 and kind in response.headers["content-type"]


def test_openapi_lists_every_endpoint(client: httpx.Client) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert set(paths) >= {
        "/v1/search/text",
        "/v1/search/image",
        "/v1/images/{image_id}",
        "/v1/images/{image_id}/thumbnail",
        "/v1/index",
        "/healthz",
        "/readyz",
        "/metrics",
        "/v1/admin/reload",
        "/v1/scenes",
    }
    assert set(paths["/v1/search/text"]) == {"get", "post"}
    assert client.get("/docs").status_code == 200


def test_no_cors_by_default(client: httpx.Client) -> None:
    response = client.get("/v1/index", headers={"Origin": "https://elsewhere.example"})
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers
