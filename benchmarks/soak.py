"""Soak: a real `posapl serve` under steady mixed load for minutes, while the nightly job publishes new
versions that the server swaps in, watching for errors and for memory that grows.

8 client threads on 127.0.0.1 (default) send text searches and, every `--upload-every`-th request, an
image upload; every `--update-every` seconds a few new images are copied into the archive, `index update`
publishes a version (retention prunes old ones) and the benchmark waits until the server serves it. The
server's resident memory is read from /proc at ready, after the warm-up and at the end; growth is measured
from the warm-up reading, since first-request allocations (caches, allocator pools) are not a leak.

The archive and caption bank are real RSICD test images and captions; weights are random (no download).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import sys
import threading
import time
from pathlib import Path

from benchmarks.harness import DEFAULT_SPLIT, WORK_DIR, Result, load_average, percentile, smoke_arch, split_path
from benchmarks.server_process import Server, free_port


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--minutes", type=float, default=10.0, help="timed load after the warm-up")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--split", default=str(DEFAULT_SPLIT), help="HarMA/POSAPL split: images and captions")
    parser.add_argument("--arch", default="ViT-B-32", help="open_clip architecture (random weights)")
    parser.add_argument("--images", type=int, default=200, help="images in the first version")
    parser.add_argument("--update-every", type=float, default=180.0, help="seconds between index updates")
    parser.add_argument("--update-images", type=int, default=5, help="new images per update")
    parser.add_argument("--upload-every", type=int, default=5, help="every n-th request of a client is an upload")
    parser.add_argument("--warmup", type=float, default=30.0, help="seconds of load before the first RSS reading")


def rss_mib(pid: int) -> float:
    """Resident set size of a process (VmRSS), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


class Load:
    """Client threads sending a mix of text searches and uploads until stopped; thread-safe tallies."""

    def __init__(self, url: str, queries: list[str], uploads: list[Path], upload_every: int) -> None:
        self.url, self.queries, self.upload_every = url, queries, upload_every
        self.uploads = [(p.name, p.read_bytes()) for p in uploads]
        self.latencies: dict[str, list[float]] = {"text": [], "image": []}
        self.errors: list[str] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.counter = itertools.count()

    def client(self) -> None:
        import httpx

        with httpx.Client(base_url=self.url, timeout=120) as http:
            for turn in itertools.count(1):
                if self.stop.is_set():
                    return
                n = next(self.counter)
                kind = "image" if turn % self.upload_every == 0 else "text"
                began = time.perf_counter()
                try:
                    if kind == "text":
                        query = self.queries[n % len(self.queries)]
                        response = http.post("/v1/search/text", json={"query": query, "k": 10})
                    else:
                        name, data = self.uploads[n % len(self.uploads)]
                        response = http.post(
                            "/v1/search/image", files={"file": (name, data, "image/jpeg")}, data={"k_images": "10"}
                        )
                except httpx.HTTPError as exc:
                    with self.lock:
                        self.errors.append(f"{kind}: {type(exc).__name__}")
                    continue
                elapsed = (time.perf_counter() - began) * 1000.0
                with self.lock:
                    if response.status_code == 200:
                        self.latencies[kind].append(elapsed)
                    else:
                        self.errors.append(f"{kind}: {response.status_code} {response.text[:200]}")

    def reset(self) -> None:
        """Forget the warm-up's requests: the timed window starts now."""
        with self.lock:
            self.latencies = {"text": [], "image": []}
            self.errors = []


def _entries(split: Path) -> list[dict]:
    entries = json.loads(split.read_text())
    if not isinstance(entries, list) or not all(isinstance(e.get("caption"), list) for e in entries):
        raise ValueError(f"{split}: the soak needs a HarMA/POSAPL split file (a list of image + caption list)")
    return entries


def _update_and_wait_for_swap(root: Path, settings_kwargs: dict, url: str, timeout_s: float) -> tuple[int, float]:
    """Publish a version with the index job and wait until the server serves it; (version, seconds to swap)."""
    import httpx

    from index.job import run_update
    from index.settings import IndexSettings

    report = run_update(root, IndexSettings(root=root, **settings_kwargs))
    published = time.perf_counter()
    deadline = published + timeout_s
    while time.perf_counter() < deadline:
        try:
            if httpx.get(f"{url}/v1/index", timeout=10).json().get("version") == report.version:
                return report.version, time.perf_counter() - published
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the server did not swap to version {report.version} within {timeout_s:.0f} s")


def run(args: argparse.Namespace) -> list[Result]:
    from index.job import run_update
    from index.settings import IndexSettings

    smoke = args.smoke
    arch = str(smoke_arch()) if smoke else args.arch
    minutes = 0.15 if smoke else args.minutes
    n_images = 8 if smoke else args.images
    update_every = 3.0 if smoke else args.update_every
    update_images = 2 if smoke else args.update_images
    warmup = 2.0 if smoke else args.warmup
    clients = 2 if smoke else args.clients
    split = split_path(args.split)
    entries = _entries(split)
    updates_needed = int(minutes * 60 // update_every) + 1
    needed = n_images + updates_needed * update_images
    if len(entries) < needed:
        raise ValueError(f"{split} has {len(entries)} images, the soak needs {needed}")

    work = WORK_DIR / "soak" / ("smoke" if smoke else Path(arch).stem)
    if work.exists():
        shutil.rmtree(work)
    images = work / "archive"
    images.mkdir(parents=True)
    for entry in entries[:n_images]:
        shutil.copy2(split.parent / entry["image"], images / Path(entry["image"]).name)
    pool = [split.parent / e["image"] for e in entries[n_images:]]
    bank = work / "captions.json"
    bank.write_text(json.dumps(entries[:n_images]))
    queries = list(dict.fromkeys(c for e in entries[n_images:] for c in e["caption"]))
    root = work / "index"
    settings_kwargs = dict(pretrained="random", arch=arch, device="cpu", num_workers=0, progress=False)
    build = IndexSettings(root=root, images=[images], captions=[bank], **settings_kwargs)
    run_update(root, build, build.store_config())

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "POSAPL_RELOAD_POLL_S": "1", "POSAPL_DEVICE": "cpu"}
    command = [sys.executable, "-m", "posapl.cli", "serve", "--root", str(root), "--port", str(port)]
    server = Server("posapl serve", command, f"{url}/readyz", env, work / "server.log")
    load_before = load_average()
    try:
        server.wait_ready()
        rss_ready = rss_mib(server.process.pid)
        load = Load(url, queries, sorted(images.iterdir()), args.upload_every)
        threads = [threading.Thread(target=load.client) for _ in range(clients)]
        for thread in threads:
            thread.start()
        try:
            time.sleep(warmup)
            load.reset()
            rss_start = rss_mib(server.process.pid)
            began = time.perf_counter()
            end = began + minutes * 60
            swaps: list[tuple[int, float]] = []
            next_update = began + update_every
            while time.perf_counter() < end:
                time.sleep(max(0.0, min(next_update, end) - time.perf_counter()))
                if time.perf_counter() >= next_update and time.perf_counter() < end:
                    for path in pool[:update_images]:
                        shutil.copy2(path, images / path.name)
                    pool = pool[update_images:]
                    swaps.append(_update_and_wait_for_swap(root, settings_kwargs, url, 120))
                    next_update = time.perf_counter() + update_every
            wall = time.perf_counter() - began
            rss_end = rss_mib(server.process.pid)
        finally:
            load.stop.set()
            for thread in threads:
                thread.join()
    finally:
        server.stop()

    everything = load.latencies["text"] + load.latencies["image"]
    if not everything:
        raise RuntimeError(f"soak: no successful request ({len(load.errors)} errors: {load.errors[:3]})")
    metrics = {
        "requests": len(everything) + len(load.errors),
        "errors": len(load.errors),
        "req_per_s": len(everything) / wall,
        "p50_ms": percentile(everything, 50),
        "p95_ms": percentile(everything, 95),
        "text_p95_ms": percentile(load.latencies["text"], 95) if load.latencies["text"] else None,
        "upload_p95_ms": percentile(load.latencies["image"], 95) if load.latencies["image"] else None,
        "swaps": len(swaps),
        "rss_start_mib": round(rss_start, 1),
        "rss_end_mib": round(rss_end, 1),
        "rss_growth_pct": round(100 * (rss_end - rss_start) / rss_start, 2),
    }
    params = {
        "arch": "smoke" if smoke else arch,
        "weights": "random",
        "minutes": minutes,
        "clients": clients,
        "images": n_images,
        "captions": sum(len(e["caption"]) for e in entries[:n_images]),
        "update_every_s": update_every,
        "upload_every": args.upload_every,
    }
    raw = {
        "latencies_ms": load.latencies,
        "errors": load.errors,
        "swaps": [{"version": v, "seconds_to_swap": s} for v, s in swaps],
        "rss_ready_mib": rss_ready,
        "wall_s": wall,
        "load_avg_before": load_before,
        "load_avg_after": load_average(),
    }
    notes = (
        f"{len(load.latencies['text'])} text searches, {len(load.latencies['image'])} uploads; RSS growth from "
        f"after a {warmup:.0f} s warm-up (at ready {rss_ready:.0f} MiB); goal 0 errors, growth < 10%"
    )
    return [Result("soak", params, metrics, raw, notes)]
