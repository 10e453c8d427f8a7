"""A server under benchmark as a child process: a free port to bind, start, wait until it answers, stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """A server process in its own process group, stopped with SIGTERM (SIGKILL after a grace period)."""

    def __init__(
        self, name: str, command: list[str], ready_url: str, env: dict[str, str], log: Path, cwd: Path | None = None
    ) -> None:
        self.name, self.ready_url = name, ready_url
        self._log = open(log, "wb")
        self.process = subprocess.Popen(command, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                        start_new_session=True, cwd=cwd)

    def wait_ready(self, timeout_s: float = 600) -> None:
        import httpx

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}; see {self._log.name}")
            try:
                if httpx.get(self.ready_url, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"{self.name} not ready after {timeout_s:.0f} s; see {self._log.name}")

    def wait_runtime(self, wanted: str, timeout_s: float = 1800) -> dict:
        """Wait until `/readyz` says the encoder runtime `wanted` serves (the first ONNX export of a model takes
        minutes and runs after the server is ready); a server that settles on another runtime is an error."""
        import httpx

        from service.encoding import PREPARING

        deadline = time.monotonic() + timeout_s
        body: dict = {}
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}; see {self._log.name}")
            body = httpx.get(self.ready_url, timeout=10).json()
            if body.get("encoder_runtime") == wanted:
                return body
            if body.get("encoder_runtime_reason") != PREPARING:
                reason = body.get("encoder_runtime_reason")
                raise RuntimeError(f"{self.name} serves {body.get('encoder_runtime')}, not {wanted}: {reason}")
            time.sleep(1.0)
        raise RuntimeError(f"{self.name} does not serve {wanted} after {timeout_s:.0f} s: {body}")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()
