"""Several worker processes behind one port: `posapl serve --workers N` (or WEB_CONCURRENCY).

One Python process serves on one core at a time for everything that holds the GIL (routing, validation, JSON,
POS tagging), so on a machine with several cores N uvicorn workers answer N requests truly in parallel. Each
worker is a separate process started by uvicorn's supervisor: it builds its own application from the
environment, loads the model and opens the live index version itself, and polls CURRENT on its own, so every
worker moves to a newly published version within `reload_poll_s` of it. The settings the command line worked
out (flags, environment, the store's recorded model) reach the workers as `POSAPL_*` variables, the one way
`ServiceSettings` is read.

Threads are split between the workers: ONNX Runtime and PyTorch default to one intra-op thread per core, and
N workers each using every core would fight over them, so unless set, each worker gets cores // N
(`share_cores`, applied by `service.app.app_from_env`, which is also what `uvicorn --workers N` or
WEB_CONCURRENCY in the container image start).
"""

from __future__ import annotations

import json
import os

from pydantic import SecretStr

from service.settings import ServiceSettings

FACTORY = "service.app:app_from_env"
# uvicorn's supervisor pings each worker and replaces one that does not answer within this many seconds (its
# default is 5). A worker answers from a thread that needs the GIL, which model loading and ONNX Runtime session
# creation hold for seconds at a time on a busy machine: with 5 s, healthy workers were killed mid-start.
HEALTHCHECK_TIMEOUT_S = 60
SPLIT_THREADS = ("onnx_threads", "torch_threads")


def default_workers() -> int:
    """WEB_CONCURRENCY, the variable uvicorn and the container image use, else 1."""
    raw = os.environ.get("WEB_CONCURRENCY", "").strip()
    return int(raw) if raw.isdigit() and int(raw) > 0 else 1


def _env_value(value: object) -> str:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)


def worker_environment(settings: ServiceSettings, workers: int) -> dict[str, str]:
    """The variables from which every worker rebuilds exactly `settings` (`POSAPL_*`) and knows how many
    workers share the machine (WEB_CONCURRENCY)."""
    env = {"WEB_CONCURRENCY": str(workers)}
    dumped = settings.model_dump(mode="python")
    for name in settings.model_fields_set:
        value = getattr(settings, name)
        if value is None:
            continue
        env[f"POSAPL_{name.upper()}"] = _env_value(value if isinstance(value, SecretStr) else dumped[name])
    return env


def share_cores(settings: ServiceSettings, workers: int, cores: int | None = None) -> ServiceSettings:
    """`settings` with the encoder thread counts it leaves open set to this worker's share of the cores."""
    if workers <= 1:
        return settings
    share = max(1, (cores or os.cpu_count() or 1) // workers)
    return settings.model_copy(update={name: share for name in SPLIT_THREADS if getattr(settings, name) is None})
