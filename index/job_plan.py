"""The image side of the next version: which live records and vectors are reused, which windows come from the
embedding checkpoints, and which files are reported as failed (index.job runs it after embedding)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from index.content import ImagePlan
from index.embed import WorkState
from index.job_records import new_record, new_scene_record
from index.layout import content_id
from index.reuse import Previous, unique_ids
from index.scan import ScannedFile
from index.settings import StoreConfig
from index.store import ImageRecord, IndexVersion
from index.tiles import FilePlan
from index.vector_spool import VectorSpool


def _scene_failure(plan: FilePlan, state: WorkState) -> str | None:
    """Why a new file yields no items: its plan failed, a window failed (the scene is then left out whole, so
    that a version never holds half a scene), or it has no window with data."""
    if plan.failure is not None:
        return plan.failure
    for item in plan.items:
        if item.key in state.failures:
            where = "" if item.window is None else f"window at x={item.window[0]}, y={item.window[1]}: "
            return f"{where}{state.failures[item.key]}"
        if not state.done(item.key, item.previous):
            return "not embedded"
    if not any(item.key in state.vectors or state.reusable(item.key, item.previous) for item in plan.items):
        return "no tile holds data (every window is nodata or masked)"
    return None


def plan_images(
    chosen: dict[str, ScannedFile],
    live: IndexVersion | None,
    state: WorkState,
    file_plans: dict[str, FilePlan],
    keep_missing: bool,
    previous: dict[str, Previous],
    live_digests: dict[int, str],
    spool: VectorSpool,
) -> ImagePlan:
    """Reuse live records and vectors for known hashes (with current path and mtime), and for the unchanged
    windows of changed files (`previous`, with their ids unless the old items are kept as missing); take new
    ones from the embedding checkpoints, report files that failed to decode. A file's items (its tiles) come
    and go together. Each record's vector goes to `spool` as it is chosen; the plan holds the spool's map."""
    live_records: dict[str, list[ImageRecord]] = {}
    for record in live.all_images() if live is not None else []:
        live_records.setdefault(record.sha256, []).append(record)
    live_vectors: dict[int, np.ndarray] = {}
    if live is not None:
        ids, vectors = live.all_image_vectors()  # the exact floats, also for compressed kinds
        live_vectors = dict(zip(ids.tolist(), vectors))
    missing = [r for sha, records in live_records.items() if sha not in chosen for r in records]
    plan = ImagePlan([], np.zeros((0, spool.dim), np.float32), [], missing)  # the spool's map once complete
    fresh: set[int] = set()  # positions of records with newly made ids

    def add(record: ImageRecord, vector: np.ndarray, digest: str | None, new_id: bool) -> None:
        if new_id:
            fresh.add(len(plan.records))
        plan.records.append(record)
        spool.append(vector)
        plan.digests.append(digest)

    for sha, scanned in chosen.items():
        moved = dict(source=scanned.source, path=scanned.path, bytes=scanned.bytes, mtime=scanned.mtime)
        if sha in live_records:
            for record in live_records[sha]:
                add(replace(record, **moved), live_vectors[record.id], live_digests.get(record.id), False)
            plan.scenes[sha] = replace(live.scene(content_id(sha)), **moved)
            continue
        file_plan = file_plans[sha]
        failure = _scene_failure(file_plan, state)
        if failure is not None:
            plan.skipped.append((str(scanned.absolute), failure))
            continue
        embedded = [
            item for item in file_plan.items if item.key in state.vectors or state.reusable(item.key, item.previous)
        ]
        facts = file_plan.scene if file_plan.scene is not None else state.facts[embedded[0].key]
        for item in embedded:
            record = new_record(scanned, facts, item.window, item.size)
            digest = state.digests.get(item.key)
            if item.key in state.vectors:
                add(record, state.vectors[item.key], digest, True)
                continue
            earlier = previous[item.key]
            plan.reused += 1
            if keep_missing:  # the old item stays too, under its id
                add(record, live_vectors[earlier.id], digest, True)
            else:
                add(replace(record, id=earlier.id), live_vectors[earlier.id], digest, False)
        plan.scenes[sha] = new_scene_record(scanned, facts, len(embedded))
    if keep_missing:
        for record in plan.missing:
            add(record, live_vectors[record.id], live_digests.get(record.id), False)
            plan.scenes[record.sha256] = live.scene(record.scene_id)
    plan.records = unique_ids(plan.records, fresh)
    plan.vectors = spool.finish()
    return plan


def decode_settings(config: StoreConfig) -> dict[str, Any]:
    """What decides a file's items and pixels; a version built with other values cannot be reused item by item."""
    return {
        "bands": config.bands,
        "tile_sizes": config.tile_sizes,
        "tile_overlap": config.tile_overlap,
        "min_valid": config.min_valid,
        "max_tiles_per_scene": config.max_tiles_per_scene,
    }
