"""`build` and `update`: turn the source folders into a new published version, reusing all prior work.

An update re-embeds only content hashes the live version lacks (or none of them, after a model change), and
of a changed scene only the windows whose pixels changed (index.reuse); it resumes from the embedding
checkpoints of a killed run, drops images whose files are gone unless the store keeps missing files, and
publishes nothing when the result would equal the live version.
"""

from __future__ import annotations

import os
import shutil
import time
from contextlib import ExitStack
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import torch
from tqdm import tqdm

from index.captions import corpus_digest
from index.content import caption_bank, reusable_image_profiles, version_content
from index.embed import WorkLog, embed_files
from index.job_plan import decode_settings, plan_images
from index.layout import LAST_RUN, STAGING_PREFIX, WORK
from index.progress import stage
from index.publish import publish, remove_staging, store_lock
from index.report import RunReport, change_counts, nothing_to_index, write_report
from index.reuse import match_previous, previous_windows, read_digests
from index.scan import HashCache, ScannedFile, scan_sources
from index.settings import IndexSettings, StoreConfig
from index.sources.catalogs import prepare_catalogs
from index.store import IndexIntegrityError, IndexStore, IndexVersion
from index.tiles import plan_file
from index.vector_spool import VectorSpool
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

        decode = decode_settings(config)
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
        spool = VectorSpool(root / f"{STAGING_PREFIX}plan-{os.getpid()}", model.embed_dim)
        cleanup.callback(spool.remove)  # after publish has written the version's own vector file, or on failure
        plan = plan_images(
            chosen, live, log.load(model.embed_dim), file_plans, config.keep_missing, previous, live_digests, spool
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
