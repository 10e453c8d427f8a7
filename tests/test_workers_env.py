"""Worker processes rebuild the command line's settings from the environment, and share the cores."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.settings import ServiceSettings
from service.workers import default_workers, share_cores, worker_environment


@pytest.fixture()
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No POSAPL_* variables or .env from the machine running the tests."""
    import os

    for key in list(os.environ):
        if key.startswith("POSAPL_") or key == "WEB_CONCURRENCY":
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


def test_workers_rebuild_the_same_settings(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    given = ServiceSettings(
        index_root=tmp_path / "index",
        admin_token="s3cret token",
        cors_origins=["https://a.example", "https://b.example"],
        onnx_threads=3,
        rerank_default="multivariate",
        batch_wait_ms=0.5,
        pretrained="random",
    )
    env = worker_environment(given, 2)
    assert env["WEB_CONCURRENCY"] == "2"
    for key, value in env.items():
        clean_env.setenv(key, value)
    rebuilt = ServiceSettings()
    assert rebuilt.admin_token is not None and rebuilt.admin_token.get_secret_value() == "s3cret token"
    assert rebuilt.model_dump(exclude={"admin_token"}) == given.model_dump(exclude={"admin_token"})
    assert default_workers() == 2


def test_workers_share_the_cores_unless_told(clean_env: pytest.MonkeyPatch) -> None:
    open_threads = ServiceSettings()
    assert share_cores(open_threads, 1, cores=2) is open_threads
    shared = share_cores(open_threads, 2, cores=2)
    assert (shared.onnx_threads, shared.torch_threads) == (1, 1)
    assert share_cores(open_threads, 3, cores=8).onnx_threads == 2
    assert share_cores(ServiceSettings(onnx_threads=2), 2, cores=2).onnx_threads == 2  # a given count stays
    clean_env.setenv("WEB_CONCURRENCY", "junk")
    assert default_workers() == 1
