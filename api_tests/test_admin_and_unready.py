"""Admin authentication, and a server started without a published index (503s, admin disabled)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from api_support import ADMIN_TOKEN, LiveServer, model_env, start_server


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Bearer wrong-token"}, 401),
        ({"Authorization": f"Bearer {ADMIN_TOKEN}x"}, 401),
        ({"Authorization": f"Basic {ADMIN_TOKEN}"}, 401),
        ({"Authorization": "Bearer"}, 401),
    ],
    ids=["missing", "wrong", "prefix-match", "wrong-scheme", "empty"],
)
def test_reload_refuses_bad_tokens(client: httpx.Client, headers: dict[str, str], status: int) -> None:
    response = client.post("/v1/admin/reload", headers=headers)
    assert response.status_code == status
    assert response.json()["error"] == "unauthorized"
    assert response.headers["www-authenticate"] == "Bearer"


def test_reload_with_the_right_token(client: httpx.Client) -> None:
    response = client.post("/v1/admin/reload", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["changed"] is False and body["index_version"] == client.get("/v1/index").json()["version"]


@pytest.fixture(scope="module")
def unready_server(tmp_path_factory: pytest.TempPathFactory, tiny_arch_file: Path) -> Iterator[LiveServer]:
    """No admin token, and an index root where nothing has been published."""
    tmp = tmp_path_factory.mktemp("unready")
    env = {**model_env(tiny_arch_file), "POSAPL_INDEX_ROOT": str(tmp / "empty-root")}
    live = start_server(tmp, "unready", env, expect_ready=False)
    yield live
    live.stop()


def test_without_index_everything_index_bound_is_503(unready_server: LiveServer) -> None:
    with httpx.Client(base_url=unready_server.url, timeout=30) as http:
        assert http.get("/healthz").status_code == 200
        ready = http.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["ready"] is False and "no index version is published" in ready.json()["reason"]
        for response in (
            http.get("/v1/search/text", params={"q": "river"}),
            http.post("/v1/search/text", json={"query": "river"}),
            http.get("/v1/index"),
            http.get("/v1/images/1"),
            http.post("/v1/search/image", files={"file": ("a.jpg", b"x")}),
        ):
            assert response.status_code == 503, response.text
            assert response.json()["error"] == "index_unavailable"
            assert "no index" in response.json()["message"]


def test_admin_is_disabled_without_a_token(unready_server: LiveServer) -> None:
    response = httpx.post(f"{unready_server.url}/v1/admin/reload", headers={"Authorization": "Bearer anything"})
    assert response.status_code == 404
    assert response.json()["error"] == "admin_disabled"
