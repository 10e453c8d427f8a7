"""Helpers of the black-box tests: the real service in a uvicorn subprocess, and the test index."""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    """`uvicorn --factory service.app:app_from_env` with settings passed as POSAPL_* environment variables;
    `command` runs another server command line instead (e.g. `posapl serve --workers 2`), bound by the same
    POSAPL_HOST and POSAPL_PORT."""

    def __init__(
        self,
        env: dict[str, str],
        log_path: Path,
        tmpdir: Path,
        port: int | None = None,
        command: list[str] | None = None,
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.tmpdir = tmpdir
        tmpdir.mkdir(parents=True, exist_ok=True)
        self._env = {
            **os.environ,
            "HF_HUB_OFFLINE": "1",
            "TMPDIR": str(tmpdir),
            "POSAPL_HOST": "127.0.0.1",
            "POSAPL_PORT": str(self.port),
            **env,
        }
        self._process: subprocess.Popen[bytes] | None = None
        self._command = command

    def start(self, ready_timeout_s: float = 120.0, expect_ready: bool = True) -> LiveServer:
        log = open(self.log_path, "wb")
        self._process = subprocess.Popen(
            self._command
            or [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "service.app:app_from_env",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
            ],
            cwd=REPO,
            env=self._env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + ready_timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"server exited with {self._process.returncode}:\n{self.log()}")
            try:
                response = httpx.get(f"{self.url}/readyz", timeout=2)
                if response.status_code == 200 or (not expect_ready and response.status_code == 503):
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"server not ready after {ready_timeout_s} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=15)
        except subprocess.TimeoutExpired:  # the whole group: a supervisor's worker processes too
            os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait()
        self._process = None


DATA = Path(os.environ.get("POSAPL_TEST_DATA") or REPO.parent / "shared" / "data")  # as tests/conftest.py
N_IMAGES = 100
ADMIN_TOKEN = "api-test-admin-token"


def model_env(tiny_arch_file: Path) -> dict[str, str]:
    """Settings that make the server load the same tiny random model the test index was built with."""
    return {
        "POSAPL_PRETRAINED": "random",
        "POSAPL_ARCH": str(tiny_arch_file),
        "POSAPL_PRESET": "rsitmd",
        "POSAPL_DEVICE": "cpu",
    }


def build_index(root: Path, images: Path | list[Path], captions: Path, tiny_arch_file: Path) -> None:
    """Build or update the store at `root` with the index package's own job (what `posapl index build` runs);
    `images` is one archive folder or several."""
    from index.job import run_update
    from index.settings import IndexSettings

    settings = IndexSettings(
        root=root,
        images=[images] if isinstance(images, Path) else images,
        captions=[captions],
        pretrained="random",
        arch=str(tiny_arch_file),
        preset="rsitmd",
        device="cpu",
        num_workers=0,
        progress=False,
    )
    run_update(root, settings, settings.store_config())


def start_server(tmp: Path, name: str, env: dict[str, str], expect_ready: bool = True) -> LiveServer:
    return LiveServer(env, tmp / f"{name}.log", tmp / f"{name}-tmp").start(expect_ready=expect_ready)


def unit_test_module(filename: str):
    """A module of tests/ (the unit tests' helpers), loaded by path: both test folders are rootless."""
    spec = importlib.util.spec_from_file_location(f"posapl_unit_{Path(filename).stem}", REPO / "tests" / filename)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
