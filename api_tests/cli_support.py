"""Run `posapl` in a subprocess with the commands and hooks that this checkout's pyproject.toml declares.

An editable install keeps the entry points of the day it was installed; a `posapl-*.dist-info` written from
pyproject.toml, first on PYTHONPATH, makes the subprocess see the declared ones (after `pip install -e .` the
two agree, so in CI this changes nothing).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

from api_support import REPO


def entry_points_overlay(folder: Path) -> Path:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    info = folder / f"posapl-{project['version']}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: posapl\nVersion: {project['version']}\n")
    groups = {"console_scripts": project["scripts"], **project["entry-points"]}
    (info / "entry_points.txt").write_text(
        "".join(
            f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in names.items()) + "\n" for group, names in groups.items()
        )
    )
    return folder


def posapl_env(overlay: Path, **extra: str) -> dict[str, str]:
    path = os.pathsep.join([str(overlay), str(REPO), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": path, **extra}


def posapl(args: list[str], env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "posapl.cli", *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO
    )


def start_posapl(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "posapl.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
