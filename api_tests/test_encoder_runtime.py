"""The encoder runtime as a client sees it: the default server on CPU switches to ONNX Runtime once its graphs
are ready and says so in /readyz; a server told to use PyTorch answers the same searches with the same scores."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from api_support import LiveServer, model_env, start_server

QUERIES = ["a river", "many planes are parked next to a long building in an airport", "green trees near a lake"]
SCORE_TOLERANCE = 1e-5


def _wait_for_runtime(url: str, wanted: str, timeout_s: float = 900.0) -> dict:
    """The first export of a model takes a while (longer on a loaded machine); the server is ready meanwhile."""
    deadline = time.monotonic() + timeout_s
    body: dict = {}
    while time.monotonic() < deadline:
        response = httpx.get(f"{url}/readyz", timeout=10)
        assert response.status_code == 200, response.text
        body = response.json()
        if body["encoder_runtime"] == wanted:
            return body
        assert body["encoder_runtime"] == "torch" and "meanwhile" in body["encoder_runtime_reason"], body
        time.sleep(1.0)
    raise AssertionError(f"the server did not switch to {wanted} within {timeout_s} s: {body}")


@pytest.fixture(scope="module")
def torch_server(tmp_path_factory: pytest.TempPathFactory, index_root: Path, tiny_arch_file: Path) -> Iterator[str]:
    env = {**model_env(tiny_arch_file), "POSAPL_INDEX_ROOT": str(index_root), "POSAPL_ENCODER_RUNTIME": "torch"}
    live = start_server(tmp_path_factory.mktemp("torch-server"), "torch", env)
    yield live.url
    live.stop()


def test_default_cpu_server_serves_onnx_with_pytorch_results(
    server: LiveServer, torch_server: str, indexed_image: tuple[int, Path]
) -> None:
    body = _wait_for_runtime(server.url, "onnx")
    assert body["ready"] is True and body["encoder_runtime_reason"] is None
    reference = httpx.get(f"{torch_server}/readyz", timeout=10).json()
    assert reference["encoder_runtime"] == "torch" and reference["encoder_runtime_reason"] is None

    for query in QUERIES:
        request = {"query": query, "k": 10, "rerank": "none"}
        got = httpx.post(f"{server.url}/v1/search/text", json=request, timeout=60).json()["results"]
        want = httpx.post(f"{torch_server}/v1/search/text", json=request, timeout=60).json()["results"]
        assert [hit["id"] for hit in got] == [hit["id"] for hit in want]
        assert max(abs(a["score"] - b["score"]) for a, b in zip(got, want, strict=True)) <= SCORE_TOLERANCE

    _, path = indexed_image
    files = {"file": ("query.jpg", path.read_bytes())}
    fields = {"k_captions": "5", "k_images": "5", "rerank": "none"}
    got = httpx.post(f"{server.url}/v1/search/image", files=files, data=fields, timeout=60).json()
    want = httpx.post(f"{torch_server}/v1/search/image", files=files, data=fields, timeout=60).json()
    assert [hit["id"] for hit in got["images"]] == [hit["id"] for hit in want["images"]]
    assert [hit["text"] for hit in got["captions"]] == [hit["text"] for hit in want["captions"]]
    assert max(abs(a["score"] - b["score"]) for a, b in zip(got["images"], want["images"], strict=True)) <= 1e-5


def test_static_int8_without_a_passed_gate_serves_float32_and_says_why(
    tmp_path_factory: pytest.TempPathFactory, index_root: Path, tiny_arch_file: Path
) -> None:
    """A server asked for the static int8 text tower, with no agreement measured for it (an empty graph cache),
    serves the float32 graph in ONNX Runtime and says why in /readyz instead of failing or serving int8."""
    env = {
        **model_env(tiny_arch_file),
        "POSAPL_INDEX_ROOT": str(index_root),
        "POSAPL_ONNX_TEXT_PRECISION": "int8-static",
        "POSAPL_ONNX_CACHE_DIR": str(tmp_path_factory.mktemp("empty-onnx-cache")),
    }
    live = start_server(tmp_path_factory.mktemp("static-server"), "static", env)
    try:
        body = _wait_for_runtime(live.url, "onnx")
        reason = body["encoder_runtime_reason"]
        assert "no static int8 text graph has been built" in reason and "the float32 text tower serves" in reason
        assert str(env["POSAPL_ONNX_CACHE_DIR"]) not in reason
        response = httpx.post(f"{live.url}/v1/search/text", json={"query": QUERIES[0], "k": 3}, timeout=60)
        assert response.status_code == 200 and len(response.json()["results"]) == 3
    finally:
        live.stop()
