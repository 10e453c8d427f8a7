"""`build` and `update`: turn the source folders into a new published version, reusing all prior work.

An update re-embeds only content hashes the live version lacks (or none of them, after a model change),
resumes from the embedding checkpoints of a killed run, drops images whose files are gone unless the store
keeps missing files, and publishes nothing when the result would equal the live version.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from index.captions import corpus_digest, load_corpus
from index.embed import WorkLog, WorkState, embed_files
from index.layout import LAST_RUN, WORK, content_id
from index.profiles import compute_profiles
from index.publish import VersionContent, publish, remove_staging, store_lock
from index.scan import HashCache, ScannedFile, scan_sources
from index.settings import IndexSettings, StoreConfig
from index.store import ImageRecord, IndexIntegrityError, IndexStore, IndexVersion
from index.vectors import IndexSpec, build_index, stored_vectors
from posapl.checkpoint import load_model
from posapl.encode import embed_captions
from posapl.model import POSAPL
from posapl.pos import PosTagger

PAUSE_MARKER = "fault-paused"


@dataclass
class RunReport:
    status: str  # "published" | "unchanged"
    version: int
    started: str
    seconds: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)
    full_rebuild: str | None = None  # why nothing of the live version was reused
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "skipped": [{"path": p, "reason": r} for p, r in self.skipped]}


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
    return live, None


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as handle:
        json.dump(data, handle, indent=2)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _new_record(scanned: ScannedFile, facts) -> ImageRecord:
    return ImageRecord(
        id=content_id(scanned.sha256),
        source=scanned.source,
        path=scanned.path,
        sha256=scanned.sha256,
        bytes=scanned.bytes,
        width=facts.width,
        height=facts.height,
        mtime=scanned.mtime,
        bands=facts.bands,
        dtype=facts.dtype,
        preprocessing=facts.preprocessing,
        bbox=facts.bbox,
        crs=facts.crs,
    )


def _captions(
    model: POSAPL, config: StoreConfig, live: IndexVersion | None, digest: str, batch_size: int
) -> tuple[list[tuple[str, str]], np.ndarray, bool]:
    """(text, source) per caption id, their vectors, and whether the live bank was reused unchanged."""
    if live is not None and live.manifest.raw.get("caption_digest") == digest:
        records = live.all_captions()
        ids, vectors = stored_vectors(live.caption_index)
        order = np.argsort(ids)
        return [(r.text, r.source) for r in records], vectors[order], True
    corpus = load_corpus(config.captions)
    if not corpus:
        return [], np.zeros((0, model.embed_dim), np.float32), False
    vectors = embed_captions(model, PosTagger(), [text for text, _ in corpus], batch_size=batch_size)
    return corpus, vectors, False


@dataclass
class ImagePlan:
    """The image side of the next version: records and vectors in the same order, plus what was left out."""

    records: list[ImageRecord]
    vectors: list[np.ndarray]
    skipped: list[tuple[str, str]]
    missing: list[ImageRecord]  # live entries whose content no longer exists in the folders


def _plan_images(
    chosen: dict[str, ScannedFile],
    live: IndexVersion | None,
    state: WorkState,
    keep_missing: bool,
) -> ImagePlan:
    """Reuse live records and vectors for known hashes (with current path and mtime), take new ones from the
    embedding checkpoints, report files that failed to decode."""
    live_records = {r.sha256: r for r in live.all_images()} if live is not None else {}
    live_vectors: dict[int, np.ndarray] = {}
    if live is not None:
        ids, vectors = stored_vectors(live.image_index)
        live_vectors = dict(zip(ids.tolist(), vectors))
    plan = ImagePlan([], [], [], [r for sha, r in live_records.items() if sha not in chosen])
    for sha, scanned in chosen.items():
        if sha in live_records:
            record = replace(
                live_records[sha], source=scanned.source, path=scanned.path, bytes=scanned.bytes, mtime=scanned.mtime
            )
            vector = live_vectors[record.id]
        elif sha in state.vectors:
            record, vector = _new_record(scanned, state.facts[sha]), state.vectors[sha]
        else:
            plan.skipped.append((str(scanned.absolute), state.failures.get(sha, "not embedded")))
            continue
        plan.records.append(record)
        plan.vectors.append(vector)
    if keep_missing:
        for record in plan.missing:
            plan.records.append(record)
            plan.vectors.append(live_vectors[record.id])
    return plan


def _reusable_image_profiles(
    live: IndexVersion | None, captions_reused: bool, points: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """The live version's image profiles (ids, rows) when they hold against the next version's bank: same
    caption bank and model (the caption digest matched) and the same number of points."""
    if live is None or not captions_reused:
        return None
    info = live.manifest.raw.get("profiles", {})
    if info.get("method") is None or info.get("points") != points:
        return None
    ids = live.image_ids()
    return ids, live.image_profiles(ids)


def _content(
    model: POSAPL,
    config: StoreConfig,
    plan: ImagePlan,
    captions: tuple[list[tuple[str, str]], np.ndarray],
    spec: IndexSpec,
    extra_manifest: dict[str, Any],
    known_image_profiles: tuple[np.ndarray, np.ndarray] | None,
) -> VersionContent:
    caption_texts, caption_vectors = captions
    image_vectors = np.stack(plan.vectors) if plan.vectors else np.zeros((0, model.embed_dim), np.float32)
    image_ids = np.array([r.id for r in plan.records], dtype=np.int64)
    caption_ids = np.arange(len(caption_texts), dtype=np.int64)
    image_index, index_info = build_index(image_vectors, image_ids, spec)
    caption_index, _ = build_index(caption_vectors, caption_ids, IndexSpec())
    profiles, profile_info = compute_profiles(
        image_ids, image_vectors, caption_ids, caption_vectors, config.profile_points, known_image_profiles
    )
    size = model.image_size
    return VersionContent(
        image_records=plan.records,
        image_vectors=image_vectors,
        image_index=image_index,
        caption_texts=caption_texts,
        caption_index=caption_index,
        profiles=profiles,
        skipped=plan.skipped,
        manifest={
            "model": {
                "fingerprint": model.fingerprint(),
                "checkpoint": config.checkpoint,
                "pretrained": config.pretrained,
                "arch": config.arch,
                "preset": config.preset,
            },
            "dim": model.embed_dim,
            "index": {**index_info, "requested": asdict(spec)},
            "profiles": profile_info,
            "sources": [str(s) for s in config.sources],
            "caption_sources": [str(p) for p in config.captions],
            "preprocessing": "first three bands; non-8-bit data scaled to 8-bit by per-image 2nd-98th "
            f"percentiles (per-image note in images.preprocessing); bicubic resize to {size}x{size}",
            **extra_manifest,
        },
    )


def run_update(root: Path, settings: IndexSettings, config: StoreConfig | None = None) -> RunReport:
    """Build or update the store at `root` (build passes `config`, which is checked and saved first)."""
    root = root.resolve()
    started = time.perf_counter()
    report_started = datetime.now(UTC).isoformat(timespec="seconds")
    with store_lock(root), ExitStack() as cleanup:
        if config is not None:
            config.check()
            config.save(root)
        config = StoreConfig.load(root)
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

        live_records = {r.sha256: r for r in live.all_images()} if live is not None else {}
        cache: HashCache = {(r.source, r.path): (r.bytes, r.mtime, r.sha256) for r in live_records.values()}
        if live is not None and [str(s) for s in config.sources] != live.manifest.sources:
            cache = {}  # source numbering changed; hashes are recomputed rather than mis-attributed
        files, unreadable = scan_sources(config.sources, cache, settings.hash_threads)
        chosen: dict[str, ScannedFile] = {}
        for scanned in files:
            chosen.setdefault(scanned.sha256, scanned)

        state = log.load(model.embed_dim)
        new = [sha for sha in chosen if sha not in live_records]
        todo = [(sha, chosen[sha].absolute) for sha in new if sha not in state.vectors and sha not in state.failures]
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
        )
        plan = _plan_images(chosen, live, log.load(model.embed_dim), config.keep_missing)
        plan.skipped = sorted(plan.skipped + unreadable)

        digest = corpus_digest(config.captions) + ":" + fingerprint
        caption_texts, caption_vectors, captions_reused = _captions(model, config, live, digest, settings.batch_size)
        spec = IndexSpec(kind=config.index_kind, nlist=config.nlist, nprobe=config.nprobe)
        counts = {
            "files": len(files),
            "duplicates": len(files) - len(chosen),
            "new": sum(1 for r in plan.records if r.sha256 not in live_records),
            "resumed": len(new) - len(todo),
            "removed": 0 if config.keep_missing else len(plan.missing),
            "missing_kept": len(plan.missing) if config.keep_missing else 0,
            "images": len(plan.records),
            "captions": len(caption_texts),
            "skipped": len(plan.skipped),
        }
        unchanged = (
            live is not None
            and captions_reused
            and set(plan.records) == set(live_records.values())
            and plan.skipped == sorted(map(tuple, live.skipped()))
            and live.manifest.index.get("requested") == asdict(spec)
            and live.manifest.sources == [str(s) for s in config.sources]
            and live.manifest.raw.get("profiles", {}).get("points") == config.profile_points
        )
        if unchanged:
            number, status = live.number, "unchanged"
        else:
            content = _content(
                model,
                config,
                plan,
                (caption_texts, caption_vectors),
                spec,
                {"caption_digest": digest, "counts": {"duplicates": counts["duplicates"]}},
                _reusable_image_profiles(live, captions_reused, config.profile_points),
            )
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
        )
        _write_json_atomic(root / LAST_RUN, report.to_dict())
        return report
