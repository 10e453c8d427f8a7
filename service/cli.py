"""`posapl serve`: build the index on first start when needed, then serve the API and the web page."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from index.job import run_update
from index.settings import IndexSettings
from index.store import IndexIntegrityError, IndexStore
from posapl.checkpoint import CheckpointError
from posapl.cli import settings_from_args
from posapl.weights import WeightsUnavailableError
from service.settings import ServiceSettings

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
    parser.set_defaults(func=serve)


def _build_index_if_missing(settings: ServiceSettings, args: argparse.Namespace) -> int:
    store = IndexStore(settings.index_root)
    try:
        live = store.current_version()
    except IndexIntegrityError as exc:
        print(f"posapl serve: {exc}", file=sys.stderr)
        return 2
    if live is not None:
        if args.images:
            print(
                f"using the published index version {live} under {settings.index_root}; "
                "run `posapl index update` to add new images"
            )
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
    report = run_update(settings.index_root, index_settings, index_settings.store_config())
    print(
        f"index version {report.version}: {report.counts.get('images', 0)} images, "
        f"{report.counts.get('captions', 0)} captions, {report.counts.get('skipped', 0)} skipped"
    )
    return 0


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from service.app import create_app, load_serving_model

    settings = settings_from_args(ServiceSettings, args)
    try:
        model = load_serving_model(settings)
    except WeightsUnavailableError as exc:
        hint = "" if "--pretrained random" in str(exc) else f"\n{OFFLINE_HINT}"
        print(f"posapl serve: {exc}{hint}", file=sys.stderr)
        return 2
    except (CheckpointError, FileNotFoundError, ValueError) as exc:
        print(f"posapl serve: cannot load the model: {exc}", file=sys.stderr)
        return 2
    status = _build_index_if_missing(settings, args)
    if status:
        return status
    print(f"serving on http://{settings.host}:{settings.port}/ (API docs at /docs)")
    uvicorn.run(create_app(settings, model), host=settings.host, port=settings.port, log_level="info")
    return 0
