"""`build` and `update`: turn the source folders into a new published version, reusing all prior work.

An update re-embeds only content hashes the live version lacks (or none of them, after a model change), and
of a changed scene only the windows whose pixels changed (index.reuse); it resumes from the embedding
checkpoints of a killed run, drops images whose files are gone unless the store keeps missing files, and
publishes nothing when the result would equal the live version.
"""

from __future__ import annotations

import json
import shutil
import time
from contextlib import ExitStack
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rasterio.transform import Affine, array_bounds
from tqdm import tqdm

from index.acquired import acquisition
from index.captions import corpus_digest
from index.content import ImagePlan, caption_bank, reusable_image_profiles, version_content
from index.decode import ImageFacts
from index.embed import WorkLog, WorkState, embed_files
from index.geo import footprint
from index.gsd import gsd
from index.layout import LAST_RUN, WORK, content_id, item_id
from index.progress import stage
from index.publish import publish, remove_staging, store_lock
from index.report import RunReport, change_counts, nothing_to_index, write_report
from index.reuse import Previous, match_previous, previous_windows, read_digests, unique_ids
from index.scan import HashCache, ScannedFile, scan_sources
from index.settings import IndexSettings, StoreConfig
from index.sources.catalogs import prepare_catalogs
from index.store import ImageRecord, IndexIntegrityError, IndexStore, IndexVersion, SceneRecord
from index.tiles import FilePlan, plan_file
from posapl.checkpoint import load_model
from posapl.model import POSAPL

PAUSE_MARKER = "fault-paused"


def _pause_hook(root: Path, settings: IndexSettings):
    """Crash-test hook: at the configured stage, say so in ROOT/fault-paused and wait to be killed."""

    def pause(stage: str) -> None:
        if settings.fault_pause_at == stage:
            (root / PAUSE_MARKER).write_text(stage)
            while True:
                time.sleep(1)

    return pause


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _load_model(config: StoreConfig, settings: IndexSettings) -> POSAPL:
    model = load_model(config.checkpoint, config.pretrained, config.preset, config.arch)
    return model.to(_device(settings.device)).eval()


def _open_live(store: IndexStore, fingerprint: str) -> tuple[IndexVersion | None, str | None]:
    """The live version to reuse, or None with the reason for a full rebuild."""
    if store.current_version() is None:
        return None, "no published version"
    try:
        live = store.open()
    except IndexIntegrityError as exc:
        return None, f"live version failed its check: {exc}"
    if live.manifest.fingerprint != fingerprint:
        live.close()
        return None, "model changed (fingerprint differs from the live version's)"
    if not live.has_time_sources:
        live.close()
        return None, "the live version predates time sources (items.time_source), so its records are not reused"
    return live, None


def _time(facts: ImageFacts, scanned: ScannedFile) -> dict[str, str]:
    """`time` and `time_source` of a record: the file's metadata, else its name, else its mtime."""
    return asdict(acquisition(facts.time, scanned.absolute.name, scanned.mtime))


def _geometry_text(facts: ImageFacts, window: tuple[int, int, int, int]) -> str | None:
    shape = footprint(facts.crs, facts.transform, window)
    return None if shape is None else json.dumps(shape, separators=(",", ":"))


def _new_record(
    scanned: ScannedFile,
    facts: ImageFacts,
    window: tuple[int, int, int, int] | None = None,
    size: int | None = None,
) -> ImageRecord:
    """The record of the whole file (window None) or of one tile of it."""
    box = window or (0, 0, facts.width, facts.height)
    return ImageRecord(
        id=item_id(scanned.sha256, window, size),
        source=scanned.source,
        path=scanned.path,
        sha256=scanned.sha256,
        bytes=scanned.bytes,
        width=box[2],
        height=box[3],
        mtime=scanned.mtime,
        bands=facts.bands,
        dtype=facts.dtype,
        preprocessing=facts.preprocessing,
        bbox=_window_bounds(facts, box),
        crs=facts.crs,
        window=window,
        window_size=size,
        footprint=_geometry_text(facts, box),
        gsd=gsd(facts.crs, facts.transform, box),
        **_time(facts, scanned),
    )


def _window_bounds(facts: ImageFacts, window: tuple[int, int, int, int]) -> tuple[float, float, float, float] | None:
    """Native bounds of a window (the file's bounds for the whole file)."""
    if facts.transform is None:
        return facts.bbox
    x, y, width, height = window
    return tuple(float(v) for v in array_bounds(height, width, Affine(*facts.transform) @ Affine.translation(x, y)))


def scene_record(scanned: ScannedFile, facts: ImageFacts, items: int) -> SceneRecord:
    whole = (0, 0, facts.width, facts.height)
    return SceneRecord(
        id=content_id(scanned.sha256),
        source=scanned.source,
        path=scanned.path,
        sha256=scanned.sha256,
        bytes=scanned.bytes,
        mtime=scanned.mtime,
        width=facts.width,
        height=facts.height,
        bands=facts.bands,
        dtype=facts.dtype,
        preprocessing=facts.preprocessing,
        bbox=facts.bbox,
        crs=facts.crs,
        footprint=_geometry_text(facts, whole),
        gsd=gsd(facts.crs, facts.transform, whole),
        **_time(facts, scanned),
        items=items,
    )


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


def _plan_images(
    chosen: dict[str, ScannedFile],
    live: IndexVersion | None,
    state: WorkState,
    file_plans: dict[str, FilePlan],
    keep_missing: bool,
    previous: dict[str, Previous],
    live_digests: dict[int, str],
) -> ImagePlan:
    """Reuse live records and vectors for known hashes (with current path and mtime), and for the unchanged
    windows of changed files (`previous`, with their ids unless the old items are kept as missing); take new
    ones from the embedding checkpoints, report files that failed to decode. A file's items (its tiles) come
    and go together."""
    live_records: dict[str, list[ImageRecord]] = {}
    for record in live.all_images() if live is not None else []:
        live_records.setdefault(record.sha256, []).append(record)
    live_vectors: dict[int, np.ndarray] = {}
    if live is not None:
        ids, vectors = live.all_image_vectors()  # the exact floats, also for compressed kinds
        live_vectors = dict(zip(ids.tolist(), vectors))
    missing = [r for sha, records in live_records.items() if sha not in chosen for r in records]
    plan = ImagePlan([], [], [], missing)
    fresh: set[int] = set()  # positions of records with newly made ids

    def add(record: ImageRecord, vector: np.ndarray, digest: str | None, new_id: bool) -> None:
        if new_id:
            fresh.add(len(plan.records))
        plan.records.append(record)
        plan.vectors.append(vector)
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
            record = _new_record(scanned, facts, item.window, item.size)
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
        plan.scenes[sha] = scene_record(scanned, facts, len(embedded))
    if keep_missing:
        for record in plan.missing:
            add(record, live_vectors[record.id], live_digests.get(record.id), False)
            plan.scenes[record.sha256] = live.scene(record.scene_id)
    plan.records = unique_ids(plan.records, fresh)
    return plan


def _decode_settings(config: StoreConfig) -> dict[str, Any]:
    """What decides a file's items and pixels; a version built with other values cannot be reused item by item."""
    return {
        "bands": config.bands,
        "tile_sizes": config.tile_sizes,
        "tile_overlap": config.tile_overlap,
        "min_valid": config.min_valid,
        "max_tiles_per_scene": config.max_tiles_per_scene,
    }


def run_update(root: Path, settings: IndexSettings, config: StoreConfig | None = None) -> RunReport:
    """Build or update the store at `root` (build passes `config`, which is checked and saved first)."""
    root = root.resolve()
    started = time.perf_counter()
    report_started = datetime.now(UTC).isoformat(timespec="seconds")
    with store_lock(root), ExitStack() as cleanup:
        if config is not None:
            config.check()
            config.save(root)
        config, catalogs = prepare_catalogs(root, StoreConfig.load(root))
        remove_staging(root)
        (root / PAUSE_MARKER).unlink(missing_ok=True)
        pause = _pause_hook(root, settings)

        model = _load_model(config, settings)
        fingerprint = model.fingerprint()
        live, full_rebuild = _open_live(IndexStore(root), fingerprint)
        if live is not None:
            cleanup.callback(live.close)
        work_root = root / WORK
        for stale in work_root.glob("*") if work_root.is_dir() else []:
            if stale.name != fingerprint[:16]:
                shutil.rmtree(stale, ignore_errors=True)  # checkpoints of another model can never be reused
        log = WorkLog(work_root / fingerprint[:16])

        decode = _decode_settings(config)
        if live is not None and live.manifest.raw.get("decode") != decode:
            full_rebuild = "tiling or band settings changed"
            live.close()
            live = None
        live_items = live.all_images() if live is not None else []
        live_records = {r.sha256: r for r in live_items}
        cache: HashCache = {(r.source, r.path): (r.bytes, r.mtime, r.sha256) for r in live_records.values()}
        if live is not None and [str(s) for s in config.sources] != live.manifest.sources:
            cache = {}  # source numbering changed; hashes are recomputed rather than mis-attributed
        files, unreadable, ignored = scan_sources(config.sources, cache, settings.hash_threads, settings.progress)
        chosen: dict[str, ScannedFile] = {}
        for scanned in files:
            chosen.setdefault(scanned.sha256, scanned)

        state = log.load(model.embed_dim)
        new = [sha for sha in chosen if sha not in live_records]
        bands = tuple(config.bands) if config.bands else None
        file_plans = {
            sha: plan_file(
                sha, chosen[sha].absolute, config.tile_sizes, config.tile_overlap, bands, config.max_tiles_per_scene,
                config.max_pixels,
            )
            for sha in tqdm(new, desc="planning tiles", unit="file", disable=not settings.progress or not new)
        }
        live_digests = read_digests(live) if live is not None else {}
        file_plans, previous = match_previous(file_plans, chosen, previous_windows(live_items, live_digests, chosen))
        planned = [item for sha in new for item in file_plans[sha].items]
        todo = [item for item in planned if not state.done(item.key, item.previous)]
        embed = embed_files
        if settings.ray_address is not None:
            from index.cluster import cluster_embedder

            embed = cluster_embedder(config, settings)
        embed(
            model,
            todo,
            log,
            settings.batch_size,
            settings.num_workers,
            config.max_pixels,
            after_batch=lambda n: pause(f"batch:{n}"),
            progress=settings.progress,
            min_valid=config.min_valid,
        )
        plan = _plan_images(
            chosen, live, log.load(model.embed_dim), file_plans, config.keep_missing, previous, live_digests
        )
        plan.skipped = sorted(catalogs.name_items(plan.skipped + unreadable) + catalogs.skipped)
        plan.records, plan.stac = catalogs.annotate(plan.records, plan.scenes)
        if not plan.records:
            current = IndexStore(root).current_version()
            raise nothing_to_index(config.sources, len(files), plan.skipped, ignored, current)

        digest = corpus_digest(config.captions) + ":" + fingerprint
        caption_texts, caption_vectors, captions_reused = caption_bank(
            model, config, live, digest, settings.batch_size, settings.progress
        )
        spec = config.index_spec()
        counts = {
            "files": len(files),
            "duplicates": len(files) - len(chosen),
            **change_counts(live_items, chosen, plan.records, plan.reused),
            "resumed": len(planned) - len(todo),
            "scenes": len(plan.scenes),
            "missing_kept": len({r.sha256 for r in plan.missing}) if config.keep_missing else 0,
            "images": len(plan.records),
            "captions": len(caption_texts),
            "skipped": len(plan.skipped),
            "ignored": len(ignored),
        }
        unchanged = (
            live is not None
            and captions_reused
            and set(plan.records) == set(live.all_images())
            and plan.skipped == sorted(map(tuple, live.skipped()))
            and live.manifest.index.get("requested") == asdict(spec)
            and live.manifest.sources == [str(s) for s in config.sources]
            and live.manifest.raw.get("profiles", {}).get("points") == config.profile_points
        )
        if unchanged:
            number, status = live.number, "unchanged"
        else:
            content = version_content(
                model,
                config,
                plan,
                (caption_texts, caption_vectors),
                spec,
                {"caption_digest": digest, "counts": {"duplicates": counts["duplicates"]}, "decode": decode},
                reusable_image_profiles(live, captions_reused, config.profile_points),
                settings.progress,
                live,
            )
            with stage("writing, verifying and publishing the version", settings.progress):
                number, status = publish(root, content, config.keep_versions, pause), "published"
        log.clear()
        report = RunReport(
            status,
            number,
            report_started,
            round(time.perf_counter() - started, 3),
            counts,
            full_rebuild if full_rebuild != "no published version" else None,
            plan.skipped,
            ignored,
        )
        write_report(root / LAST_RUN, report)
        return report
