"""`posapl serve`: build the index on first start when needed, then serve the API and the web page."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from index.job import run_update
from index.layout import MANIFEST
from index.manifest import IndexIntegrityError, read_manifest
from index.report import NothingToIndexError
from index.settings import IndexSettings, StoreConfig
from index.store import IndexStore
from posapl.checkpoint import CheckpointError
from posapl.cli import settings_from_args
from posapl.weights import WeightsUnavailableError
from service.settings import ServiceSettings
from service.workers import FACTORY, HEALTHCHECK_TIMEOUT_S, default_workers, worker_environment

OFFLINE_HINT = (
    "Pass a local open_clip weights file with --pretrained /path/to/open_clip_pytorch_model.bin "
    "(or POSAPL_PRETRAINED); for testing only, --pretrained random runs with random weights."
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="serve the search API and web page (builds the index on first start)",
        description="Serve text-to-image and image-to-caption search over an index store. With --images and no "
        "published index under --root, the index is built first (with a progress bar).",
    )
    parser.add_argument(
        "--images", type=Path, action="append", help="image folder to index on first start (repeatable)"
    )
    parser.add_argument(
        "--captions",
        type=Path,
        action="append",
        help="caption file for the caption bank (annotation JSON or one caption a line; repeatable)",
    )
    parser.add_argument("--root", dest="index_root", type=Path, help="index store folder (default data/index)")
    parser.add_argument("--checkpoint", help="POSAPL checkpoint directory (default: zero-shot base CLIP)")
    parser.add_argument("--pretrained", help="open_clip tag, local weights file, or 'random' (tests only)")
    parser.add_argument("--arch", help="open_clip architecture or JSON model config (zero-shot only)")
    parser.add_argument("--preset", choices=["rsitmd", "rsicd"])
    parser.add_argument("--device", help="torch device, e.g. cpu or cuda")
    parser.add_argument("--host", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default 8000)")
    parser.add_argument("--public-url", help="base of the links in responses, as clients reach the service")
    parser.add_argument(
        "--workers",
        type=int,
        default=default_workers(),
        help="server processes on the one port, each with its own model and index (default WEB_CONCURRENCY or 1)",
    )
    parser.set_defaults(func=serve)


MODEL_FIELDS = ("checkpoint", "pretrained", "arch", "preset")


def _same_setting(given: str | None, recorded: str | None) -> bool:
    """Equal as settings: empty means unset, and a file named two ways (relative, absolute) is one file."""
    given, recorded = given or None, recorded or None
    if given is None or recorded is None:
        return given == recorded
    return given == recorded or (Path(given).exists() and Path(given).resolve() == Path(recorded).resolve())


def model_from_store(settings: ServiceSettings) -> tuple[ServiceSettings, str | None]:
    """Serve the model the store was built with: model settings not given (by flag, environment or .env)
    come from ROOT/config.json; a given one that contradicts it is refused with the reason, before any
    weights are loaded. With a checkpoint only the checkpoint identifies the model (`pretrained` then just
    says where its base weights come from; arch and preset are the checkpoint's)."""
    try:
        config = StoreConfig.load(settings.index_root)
    except FileNotFoundError:
        return settings, None
    except ValueError as exc:
        return settings, f"cannot read the store's {settings.index_root / 'config.json'}: {exc}"
    recorded = {field: getattr(config, field) for field in MODEL_FIELDS}
    checked = ("checkpoint",) if config.checkpoint else MODEL_FIELDS
    given = {field: getattr(settings, field) for field in MODEL_FIELDS if field in settings.model_fields_set}
    conflicts = [
        f"{field} {given[field]!r} (the store was built with {recorded[field]!r})"
        for field in checked
        if field in given and not _same_setting(given[field], recorded[field])
    ]
    if conflicts:
        return settings, (
            f"the index store {settings.index_root} was built with another model: {'; '.join(conflicts)}. "
            "Leave these settings unset to serve the store's model, or rebuild the index with "
            "`posapl index build` for this one."
        )
    defaults = {field: value for field, value in recorded.items() if field not in given}
    return settings.model_copy(update=defaults), None


def fingerprint_mismatch(root: Path, fingerprint: str) -> str | None:
    """Why the live version cannot be served by this model, known before the server starts; None when it
    can, or when there is no readable version yet (the server then reports that itself)."""
    store = IndexStore(root)
    try:
        live = store.current_version()
        if live is None:
            return None
        manifest = read_manifest(store.version_path(live) / MANIFEST)
    except IndexIntegrityError:
        return None
    if manifest.fingerprint == fingerprint:
        return None
    model = {k: v for k, v in manifest.model.items() if k != "fingerprint"}
    return (
        f"index version {live} under {root} was embedded by model {manifest.fingerprint[:12]} ({model}), "
        f"but the settings give model {fingerprint[:12]}; serve with the store's model settings "
        "or rebuild the index with this model"
    )


def _existing_store_note(root: Path, live: int, args: argparse.Namespace) -> str:
    """What --images/--captions mean for a store that exists: its folders are fixed in config.json, so say
    exactly which command adds the ones it does not know yet."""
    try:
        config = StoreConfig.load(root)
    except (OSError, ValueError):
        return f"using the published index version {live} under {root}"
    new_images = [str(p.resolve()) for p in args.images or [] if p.resolve() not in config.sources]
    new_captions = [str(p.resolve()) for p in args.captions or [] if p.resolve() not in config.captions]
    note = f"using the published index version {live} under {root}"
    if not new_images and not new_captions:
        return f"{note}; run `posapl index update --root {root}` to pick up new files in its folders"
    flags = (["--add-images", *new_images] if new_images else []) + (
        ["--add-captions", *new_captions] if new_captions else []
    )
    command = shlex.join(["posapl", "index", "update", "--root", str(root), *flags])
    return (
        f"{note}, which does not include {', '.join(new_images + new_captions)}; add them with "
        f"`{command}` (the running server picks up the new version by itself)"
    )


def _build_index_if_missing(settings: ServiceSettings, args: argparse.Namespace) -> int:
    store = IndexStore(settings.index_root)
    try:
        live = store.current_version()
    except IndexIntegrityError as exc:
        print(f"posapl serve: {exc}", file=sys.stderr)
        return 2
    if live is not None:
        if args.images or args.captions:
            print(_existing_store_note(settings.index_root, live, args))
        return 0
    if not args.images:
        print(
            f"posapl serve: no index under {settings.index_root}; pass --images DIR to build one, "
            "or point --root at an existing index store",
            file=sys.stderr,
        )
        return 2
    missing = [str(p) for p in [*args.images, *(args.captions or [])] if not p.exists()]
    if missing:
        print(f"posapl serve: not found: {', '.join(missing)}", file=sys.stderr)
        return 2
    index_settings = IndexSettings(
        root=settings.index_root,
        images=args.images,
        captions=args.captions,
        checkpoint=settings.checkpoint,
        pretrained=settings.pretrained,
        arch=settings.arch,
        preset=settings.preset,
        device=settings.device,
        max_pixels=settings.max_image_pixels,
    )
    print(f"building the index for {', '.join(map(str, args.images))} under {settings.index_root} …")
    try:
        report = run_update(settings.index_root, index_settings, index_settings.store_config())
    except (NothingToIndexError, ValueError) as exc:  # nothing indexable, or a file given as an image folder
        print(f"posapl serve: {exc}", file=sys.stderr)
        return 2
    print(
        f"index version {report.version}: {report.counts.get('images', 0)} images, "
        f"{report.counts.get('captions', 0)} captions, {report.counts.get('skipped', 0)} skipped"
    )
    return 0


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from service.app import create_app, load_serving_model

    if args.workers < 1:
        print(f"posapl serve: --workers must be at least 1, got {args.workers}", file=sys.stderr)
        return 2
    settings, refusal = model_from_store(settings_from_args(ServiceSettings, args))
    if refusal:
        print(f"posapl serve: {refusal}", file=sys.stderr)
        return 2
    try:
        model = load_serving_model(settings)
    except WeightsUnavailableError as exc:
        hint = "" if "--pretrained random" in str(exc) else f"\n{OFFLINE_HINT}"
        print(f"posapl serve: {exc}{hint}", file=sys.stderr)
        return 2
    except (CheckpointError, FileNotFoundError, ValueError) as exc:
        print(f"posapl serve: cannot load the model: {exc}", file=sys.stderr)
        return 2
    mismatch = fingerprint_mismatch(settings.index_root, model.fingerprint())
    if mismatch:
        print(f"posapl serve: {mismatch}", file=sys.stderr)
        return 2
    status = _build_index_if_missing(settings, args)
    if status:
        return status
    print(f"serving on http://{settings.host}:{settings.port}/ (API docs at /docs)")
    if args.workers == 1:
        uvicorn.run(
            create_app(settings, model),
            host=settings.host,
            port=settings.port,
            log_level="info",
            access_log=settings.access_log,
        )
        return 0
    del model  # each worker loads its own; the supervisor only starts and watches them
    os.environ.update(worker_environment(settings, args.workers))
    print(f"{args.workers} worker processes; each picks up a new index version by itself")
    uvicorn.run(
        FACTORY,
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=args.workers,
        timeout_worker_healthcheck=HEALTHCHECK_TIMEOUT_S,
        log_level="info",
        access_log=settings.access_log,
    )
    return 0
