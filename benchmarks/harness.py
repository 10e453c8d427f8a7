"""What every benchmark shares: machine facts, repeated timing, and recording a result.

A number without its machine, load and versions cannot be compared with the next run, so every result
carries them. Real runs write a small JSON file under `benchmarks/results/` and append one row to the
table in `benchmarks/RESULTS.md`; smoke runs (CI) write to a temporary directory and never touch the table.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import re
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
RESULTS_TABLE = BENCH_DIR / "RESULTS.md"
WORK_DIR = BENCH_DIR / "work"
SHARED_DATA = REPO.parent / "shared" / "data"

TABLE_HEADER = (
    "| date (UTC) | machine | benchmark | parameters | results | load avg (1/5/15 min) | raw |\n"
    "|---|---|---|---|---|---|---|\n"
)
TRACKED_PACKAGES = ("torch", "faiss-gpu", "faiss-cpu", "open_clip_torch", "numpy", "spacy", "fastapi", "uvicorn")


@dataclass
class Timing:
    """Wall-clock samples in seconds of one repeated measurement (after warm-up)."""

    samples: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def min(self) -> float:
        return min(self.samples)

    @property
    def max(self) -> float:
        return max(self.samples)

    def to_dict(self) -> dict[str, Any]:
        return {"median_s": self.median, "min_s": self.min, "max_s": self.max, "samples_s": self.samples}


def time_repeated(fn: Callable[[], object], repeat: int = 5, warmup: int = 1) -> Timing:
    """Run `fn` `warmup` times untimed (caches, lazy init, allocator), then `repeat` times timed."""
    if repeat < 1 or warmup < 0:
        raise ValueError(f"need repeat >= 1 and warmup >= 0, got repeat={repeat} warmup={warmup}")
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return Timing(samples)


@contextmanager
def faiss_threads(count: int) -> Iterator[None]:
    """FAISS's thread count (OpenMP, which OpenBLAS shares) for one benchmark, restored afterwards: benchmarks
    also run inside other processes (the smoke tests), whose later searches must not inherit it."""
    import faiss

    saved = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(count)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(saved)


def percentile(values: Iterable[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); no interpolation, so p99 of 100 samples is a real sample."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of an empty sample")
    rank = max(1, min(len(ordered), -(-len(ordered) * q // 100)))
    return ordered[int(rank) - 1]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _gpu() -> str | None:
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return None


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def _versions() -> dict[str, str]:
    found = {}
    for name in TRACKED_PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def machine_info() -> dict[str, Any]:
    """Facts that decide whether two results are comparable."""
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "ram_gib": _ram_gib(),
        "gpu": _gpu(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": _versions(),
        "git_commit": _git_commit(),
        "load_avg": load_average(),
    }


def machine_label(info: dict[str, Any]) -> str:
    cpu = re.sub(r"\((R|TM)\)|CPU|Processor|\s+@.*", "", info["cpu"] or "?")
    label = f"{' '.join(cpu.split())}, {info['cores']} cores, {info['ram_gib']} GiB"
    return label + (f", {info['gpu']}" if info.get("gpu") else "")


@dataclass
class Result:
    """One benchmark run. `metrics` are the headline numbers of the table row; `raw` keeps everything else
    (per-sample timings, sweeps) for the JSON file only."""

    benchmark: str
    params: dict[str, Any]
    metrics: dict[str, Any]
    raw: dict[str, Any] = field(default_factory=dict)
    notes: str = ""


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if value == 0 or 0.01 <= abs(value) < 1e6:
            return f"{value:.3g}" if abs(value) < 100 else f"{value:.1f}"
        return f"{value:.3g}"
    return str(value)


def format_pairs(values: dict[str, Any]) -> str:
    return "; ".join(f"{k}={_fmt(v)}" for k, v in values.items()).replace("|", "/")


def table_row(result: Result, info: dict[str, Any], when: dt.datetime, raw_name: str) -> str:
    results = format_pairs(result.metrics)
    if result.notes:
        results += f" ({result.notes.replace('|', '/')})"
    load = "/".join(str(x) for x in info["load_avg"])
    return (
        f"| {when:%Y-%m-%d %H:%M} | {machine_label(info)} | {result.benchmark} | {format_pairs(result.params)} "
        f"| {results} | {load} | [json](results/{raw_name}) |\n"
    )


def record(
    result: Result,
    smoke: bool,
    results_dir: Path | None = None,
    table: Path | None = None,
) -> Path:
    """Write the JSON result; for real runs also append the table row. Returns the JSON path.

    Smoke runs go to a fresh temporary directory so CI never dirties the committed results.
    """
    info = machine_info()
    when = dt.datetime.now(dt.UTC)
    if smoke:
        out_dir = Path(tempfile.mkdtemp(prefix="posapl-bench-smoke-")) if results_dir is None else results_dir
    else:
        out_dir = results_dir or RESULTS_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{when:%Y%m%dT%H%M%S}-{result.benchmark}"
    path, n = out_dir / f"{stem}.json", 1
    while path.exists():
        n += 1
        path = out_dir / f"{stem}-{n}.json"
    name = path.name
    payload = {"date_utc": when.isoformat(timespec="seconds"), "smoke": smoke, "machine": info, **asdict(result)}
    path.write_text(json.dumps(payload, indent=1, default=str) + "\n")
    if not smoke:
        table_path = table or RESULTS_TABLE
        if not table_path.exists() or TABLE_HEADER.splitlines()[0] not in table_path.read_text():
            with open(table_path, "a") as handle:
                handle.write("\n" + TABLE_HEADER)
        with open(table_path, "a") as handle:
            handle.write(table_row(result, info, when, name))
    return path


DEFAULT_SPLIT = SHARED_DATA / "rsicd" / "rsicd_test.json"

# A small open_clip architecture for smoke runs (the tests' and the README's tiny model): the real tokenizer and
# context length, a fraction of the cost; eight blocks because Side Fusion taps blocks L-7, L-5, L-3, L-1.
SMOKE_ARCH = json.loads((REPO / "examples" / "tiny-vit.json").read_text())


def smoke_arch(directory: Path | None = None) -> Path:
    """Write the smoke architecture as an open_clip JSON config (the form `arch` accepts) and return its path."""
    directory = directory or Path(tempfile.mkdtemp(prefix="posapl-bench-arch-"))
    path = directory / "posapl-bench-smoke.json"
    path.write_text(json.dumps(SMOKE_ARCH))
    return path


def split_path(value: str | Path) -> Path:
    """A split argument, relative to the repo root when not absolute, so `../shared/data/...` works anywhere."""
    path = Path(value)
    path = path if path.is_absolute() else (REPO / path).resolve()
    if not path.exists():
        raise FileNotFoundError(f"split not found: {path}")
    return path


def query_captions(split: Path, count: int) -> list[str]:
    """`count` distinct real captions of a split, in file order: the query set shared by the speed benchmarks."""
    from training.annotations import load_annotations

    data = load_annotations(split, "test")
    seen: dict[str, None] = {}
    for caption in data.captions:
        seen.setdefault(caption.strip(), None)
        if len(seen) == count:
            break
    if len(seen) < count:
        raise ValueError(f"{split} has only {len(seen)} distinct captions, {count} requested")
    return list(seen)


def staged_images(source: Path, limit: int | None, scratch: Path) -> tuple[Path, list]:
    """The first `limit` images under `source` (all when 0 or None), copied into `scratch/images` so a benchmark's
    store never writes beside the shared data; returns that folder and its files as the indexer's work items."""
    import shutil

    from index.decode import IMAGE_SUFFIXES
    from index.embed import WorkItem
    from index.layout import file_sha256

    if not source.is_dir():
        raise FileNotFoundError(f"image folder not found: {source}")
    files = sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    folder = scratch / "images"
    folder.mkdir()
    for path in files[:limit] if limit else files:
        shutil.copy2(path, folder / path.name)
    return folder, [WorkItem(file_sha256(p), p) for p in sorted(folder.iterdir())]
