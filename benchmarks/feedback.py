"""Relevance feedback against the static list, through the HTTP API: how many images of a class a user finds
among the first 60 reviewed, starting from one example image of it.

The store holds the RSICD test images whose file names give their class (`bridge_358.jpg` is a bridge; the
numbered files name no class and are left out). Per class and seed, the example is one image of the class
drawn with that seed, and a "target" is any other image of the class:

- static: `GET /v1/items/{example}/similar?k=60`, reviewed top to bottom;
- rocchio, probe: `POST /v1/search/feedback` in rounds; each round shows the next `per_round` items (labelled
  ones never come back), an oracle labels them by class (targets positive, the rest negative), and the next
  round sends every label so far. 3 rounds of 20 review 60 items, as the static list does.

Reported per method: targets found among the reviewed items, as the mean over classes and seeds; the spread
is the standard deviation over seeds of each seed's mean over classes; recall divides by the class's targets.
With random weights (no pretrained weights offline) the embeddings hold only what a random ViT keeps of colour
and texture, so the numbers compare the methods on the same vectors, not the model's quality.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import time
from pathlib import Path

from benchmarks.harness import SHARED_DATA, WORK_DIR, Result, load_average, percentile, smoke_arch
from benchmarks.query_latency import _server
from benchmarks.server_process import free_port

CLASS_NAME = re.compile(r"([a-z]+)_\d+\.[a-z]+")
METHODS = ("static", "rocchio", "probe")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--images", type=Path, default=SHARED_DATA / "rsicd" / "test", help="RSICD image folder")
    parser.add_argument("--arch", default="ViT-B-32", help="open_clip architecture (random weights)")
    parser.add_argument("--seeds", type=int, default=5, help="example images drawn per class")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--per-round", type=int, default=20, help="items the oracle reviews per round")


def image_class(name: str) -> str | None:
    """The class a file name gives (`bridge_358.jpg` -> bridge), None for a numbered file."""
    match = CLASS_NAME.fullmatch(name)
    return match.group(1) if match else None


def stage(source: Path, folder: Path, per_class: int | None, classes: int | None) -> None:
    """Copy the named images (the first `per_class` of the first `classes` classes when given) into `folder`."""
    by_class: dict[str, list[Path]] = {}
    for path in sorted(source.glob("*.jpg")):
        name = image_class(path.name)
        if name is not None:
            by_class.setdefault(name, []).append(path)
    folder.mkdir(parents=True)
    for name in sorted(by_class)[:classes]:
        for path in by_class[name][:per_class]:
            shutil.copy2(path, folder / path.name)


def build(root: Path, folder: Path, arch: str) -> None:
    from index.job import run_update
    from index.settings import IndexSettings

    settings = IndexSettings(
        root=root, images=[folder], pretrained="random", arch=arch, device="cpu", num_workers=0, progress=False
    )
    run_update(root, settings, settings.store_config())


def item_classes(root: Path) -> dict[int, str]:
    from index.store import open_version

    with open_version(root) as version:
        return {record.id: image_class(Path(record.path).name) or "" for record in version.all_images()}


def reviewed_static(http, example: int, reviewed: int) -> list[int]:
    response = http.get(f"/v1/items/{example}/similar", params={"k": reviewed})
    response.raise_for_status()
    return [hit["id"] for hit in response.json()["results"]]


def reviewed_feedback(
    http, method: str, example: int, wanted: str, classes: dict[int, str], rounds: int, per_round: int, seed: int
) -> tuple[list[int], list[float]]:
    """Ids shown over the rounds, in order, and each round's request ms."""
    positives, negatives, shown, spent = [example], [], [], []
    for _ in range(rounds):
        body = {"method": method, "positive_ids": positives, "negative_ids": negatives, "k": per_round, "seed": seed}
        began = time.perf_counter()
        response = http.post("/v1/search/feedback", json=body)
        spent.append((time.perf_counter() - began) * 1000.0)
        response.raise_for_status()
        ids = [hit["id"] for hit in response.json()["results"]]
        shown += ids
        positives += [i for i in ids if classes[i] == wanted]
        negatives += [i for i in ids if classes[i] != wanted]
    return shown, spent


def run(args: argparse.Namespace) -> list[Result]:
    import httpx
    import numpy as np

    arch = str(smoke_arch()) if args.smoke else args.arch
    seeds, rounds, per_round = (1, 2, 3) if args.smoke else (args.seeds, args.rounds, args.per_round)
    reviewed = rounds * per_round
    load_before = load_average()
    work = WORK_DIR / "feedback" / ("smoke" if args.smoke else Path(arch).stem)
    if work.exists():
        shutil.rmtree(work)
    stage(Path(args.images), work / "images", 6 if args.smoke else None, 3 if args.smoke else None)
    began = time.perf_counter()
    build(work / "index", work / "images", arch)
    print(f"store of {len(list((work / 'images').iterdir()))} images built in {time.perf_counter() - began:.0f} s")
    classes = item_classes(work / "index")
    members: dict[str, list[int]] = {}
    for image_id, name in sorted(classes.items()):
        members.setdefault(name, []).append(image_id)

    found = {method: np.zeros((seeds, len(members))) for method in METHODS}
    recall = {method: np.zeros((seeds, len(members))) for method in METHODS}
    request_ms: dict[str, list[float]] = {method: [] for method in METHODS[1:]}
    port = free_port()
    server = _server(work / "index", arch, port, work / "server.log", {})
    try:
        server.wait_ready()
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as http:
            for seed in range(seeds):
                rng = np.random.default_rng(seed)
                for column, (name, ids) in enumerate(sorted(members.items())):
                    example = int(rng.choice(ids))
                    targets = len(ids) - 1
                    lists = {"static": reviewed_static(http, example, reviewed)}
                    for method in METHODS[1:]:
                        lists[method], spent = reviewed_feedback(
                            http, method, example, name, classes, rounds, per_round, seed
                        )
                        request_ms[method] += spent
                    for method, shown in lists.items():
                        hits = sum(classes[i] == name for i in shown[:reviewed])
                        found[method][seed, column] = hits
                        recall[method][seed, column] = hits / targets if targets else 1.0
                print(f"  seed {seed}: " + ", ".join(f"{m} {found[m][seed].mean():.2f}" for m in METHODS), flush=True)
    finally:
        server.stop()

    metrics: dict[str, float] = {}
    for method in METHODS:
        per_seed = found[method].mean(axis=1)
        metrics[f"{method}_found"] = float(per_seed.mean())
        metrics[f"{method}_found_sd"] = float(statistics.stdev(per_seed)) if seeds > 1 else 0.0
        metrics[f"{method}_recall"] = float(recall[method].mean())
    for method, samples in request_ms.items():
        metrics[f"{method}_ms_p50"] = float(percentile(samples, 50))
    params = {
        "arch": "smoke" if args.smoke else arch,
        "weights": "random",
        "images": len(classes),
        "classes": len(members),
        "seeds": seeds,
        "rounds": rounds,
        "per_round": per_round,
        "reviewed": reviewed,
    }
    raw = {
        "found": {method: values.tolist() for method, values in found.items()},
        "recall": {method: values.tolist() for method, values in recall.items()},
        "classes": sorted(members),
        "class_sizes": {name: len(ids) for name, ids in sorted(members.items())},
        "request_ms": request_ms,
        "load_avg_before": load_before,
        "load_avg_after": load_average(),
    }
    notes = (
        f"targets found among {reviewed} reviewed from one example image per class, mean over classes and seeds "
        "(sd over seeds); oracle labels by RSICD file-name class; HTTP API, CPU"
    )
    return [Result("feedback", params, metrics, raw, notes)]
