"""POS tagging per query: the full spaCy pipeline, the previous one (NER and lemmatizer disabled) and the
served one (only the POS components, POS ruler patterns only), alternated query by query; and the check that
the served pipeline's POS words equal the full pipeline's on every RSICD caption (test and train files)."""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

from benchmarks.harness import DEFAULT_SPLIT, Result, split_path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--split", default=str(DEFAULT_SPLIT), help="RSICD test annotation file (HarMA JSON)")
    parser.add_argument("--queries", type=int, default=300, help="captions timed one at a time per round")
    parser.add_argument("--repeat", type=int, default=3, help="timed rounds after one warm-up round")


def _captions(split: Path) -> list[str]:
    import json

    from posapl.text import normalize_caption

    test = [c for record in json.loads(split.read_text()) for c in record["caption"]]
    train_file = split.parent / "train_caps.txt"
    train = [line for line in train_file.read_text().splitlines() if line.strip()] if train_file.is_file() else []
    return list(dict.fromkeys(normalize_caption(c) for c in test + train))


def run(args: argparse.Namespace) -> Iterator[Result]:
    import spacy

    from posapl.pos import PIPELINES, PosTagger

    split = split_path(args.split)
    texts = _captions(split)
    queries = texts[: 20 if args.smoke else args.queries]
    repeat = 1 if args.smoke else args.repeat
    served = PosTagger()
    full = PosTagger(full=True)
    previous = PosTagger(full=True)
    previous.nlp = next(spacy.load(name, disable=["ner", "lemmatizer"]) for name in PIPELINES
                        if spacy.util.is_package(name))
    taggers = {"full": full, "previous": previous, "served": served}
    checked = texts[:200] if args.smoke else texts
    mismatches = sum(a != b for a, b in zip(served.tag(checked), full.tag(checked), strict=True))
    samples: dict[str, list[float]] = {name: [] for name in taggers}
    for round_no in range(repeat + 1):
        for text in queries:
            for name, tagger in taggers.items():
                began = time.perf_counter()
                tagger.tag([text])
                if round_no:
                    samples[name].append(time.perf_counter() - began)
    medians = {name: statistics.median(values) * 1e3 for name, values in samples.items()}
    yield Result(
        benchmark="pos-tagging",
        params={"queries": len(queries), "rounds": repeat, "checked_captions": len(checked),
                "served_components": "+".join(served.nlp.pipe_names)},
        metrics={**{f"{name}_p50_ms": value for name, value in medians.items()},
                 "served_vs_full_mismatches": mismatches},
        raw={f"{name}_s": values for name, values in samples.items()},
        notes="one caption per call, pipelines alternated call by call; mismatches = captions whose POS words "
        "differ between the served and the full pipeline",
    )
