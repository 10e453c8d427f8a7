"""The compose profile `cluster`: a Ray head that runs the nightly update as the driver, GPU workers that join it.

Checked without a Docker engine: `docker-compose config` resolves the profile, the workers reserve GPUs and join
the head's port, and the head's job command parses into index settings that embed on the running cluster.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml
from test_deploy import (
    COMPOSE,
    ENV_EXAMPLE,
    REPO,
    gpu_devices,
    published_ports,
    read_env_file,
    require_tool,
    with_password,
)

from index.cli import register
from index.settings import IndexSettings
from monitor.settings import MonitorSettings
from posapl.cli import settings_from_args


def resolved_cluster(tmp_path: Path, env_file: Path) -> dict:
    tool = require_tool("docker-compose", "apt-get install docker-compose")
    result = subprocess.run(
        [tool, "-f", str(COMPOSE), "--project-directory", str(REPO), "--env-file", str(env_file),
         "--profile", "cluster", "config"],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)["services"]


@pytest.mark.parametrize("env_file", ["defaults", ".env.example"])
def test_cluster_profile_runs_the_nightly_update_on_the_cluster(
    tmp_path: Path, env_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = ENV_EXAMPLE if env_file == ".env.example" else tmp_path / "empty.env"
    path.touch()
    services = resolved_cluster(tmp_path, with_password(tmp_path, path))
    assert {"ray-head", "ray-worker"} <= set(services)
    head, worker = services["ray-head"], services["ray-worker"]
    assert gpu_devices(worker)[0]["capabilities"] == ["gpu"]
    assert "deploy" not in head, "the head schedules and publishes; the GPUs belong to the workers"
    assert head["image"] == worker["image"] and head["build"]["args"]["EXTRAS"] == "ray"

    shell, flag, script = head["command"]
    assert (shell, flag) == ("sh", "-c")
    start, job = (shlex.split(part) for part in script.split("&&"))
    assert start[:3] == ["ray", "start", "--head"]
    port = next(arg.split("=", 1)[1] for arg in start if arg.startswith("--port="))
    head_address = read_env_file(path).get("POSAPL_RAY_HEAD") or "127.0.0.1"
    assert f"--address={head_address}:{port}" in worker["command"]
    for node in (head, worker):
        assert node["healthcheck"]["test"][1:3] == ["ray", "status"], "not the api's /readyz check"
    assert worker["healthcheck"]["test"][-1] == f"{head_address}:{port}"

    assert job[:2] == ["exec", "posapl-nightly"]
    argv = job[job.index("--") + 1 :]
    assert argv[:3] == ["posapl", "index", "update"]
    parser = argparse.ArgumentParser(prog="posapl")
    register(parser.add_subparsers())
    for key in [k for k in os.environ if k.startswith("POSAPL_")]:
        monkeypatch.delenv(key)
    for key, value in head["environment"].items():
        if value is not None and key.startswith("POSAPL_"):
            monkeypatch.setenv(key, str(value))
    settings = settings_from_args(IndexSettings, parser.parse_args(argv[1:]))
    assert settings.ray_address == "auto" and settings.root == Path("/srv/posapl/index")
    assert settings.device == "cpu"
    assert any(v.split(":")[1:] == ["/srv/posapl/index", "rw"] for v in head["volumes"]), "the driver publishes"

    # The job's after-publish step evaluates saved searches in the state database the api uses, reached through
    # the port state-db publishes on the host's loopback (host networking cannot resolve `state-db`).
    [(address, port, _)] = published_ports(services["state-db"])
    shared = services["api"]["environment"]["POSAPL_STATE_DB"]
    assert address == "127.0.0.1"
    assert head["environment"]["POSAPL_STATE_DB"] == shared.replace("@state-db:5432/", f"@127.0.0.1:{port}/")
    assert MonitorSettings().database_url().startswith("postgresql+psycopg://"), "not SQLite in the index folder"
    assert head["depends_on"] == {"state-db": {"condition": "service_healthy"}}


def test_cli_ray_flag_without_address_starts_a_local_cluster() -> None:
    parser = argparse.ArgumentParser(prog="posapl")
    register(parser.add_subparsers())
    plain = parser.parse_args(["index", "update", "--root", "r"])
    local = parser.parse_args(["index", "update", "--root", "r", "--ray"])
    remote = parser.parse_args(["index", "update", "--root", "r", "--ray", "10.0.0.5:6379", "--ray-actors", "4"])
    assert plain.ray_address is None and local.ray_address == "local"
    assert (remote.ray_address, remote.ray_actors) == ("10.0.0.5:6379", 4)
