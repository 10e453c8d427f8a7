"""`posapl index build|update|rollback|status`.

Exit codes (the nightly scheduler relies on them): 0 success (including "nothing changed"), 1 the job
failed (bad configuration, unreadable model, integrity error, I/O error, nothing indexable: an empty index
is never published), 2 invalid arguments or settings, 3 another index job holds the store's lock.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from importlib.metadata import entry_points
from pathlib import Path

from index.layout import LAST_RUN
from index.publish import StoreBusyError, rollback, store_lock
from index.report import NothingToIndexError, RunReport, summary
from index.settings import IndexSettings, StoreConfig
from index.sources.stac import catalog_file
from index.store import IndexIntegrityError, IndexStore
from index.vectors import INDEX_KINDS
from posapl.cli import settings_from_args

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_BUSY = 0, 1, 2, 3
ROOT_HELP = "index store root (default: POSAPL_INDEX_ROOT, else data/index)"


def _runtime_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", help="auto (default), cpu, cuda, cuda:N")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--num-workers", type=int, help="decode worker processes")
    parser.add_argument("--no-progress", dest="progress", action="store_const", const=False)
    parser.add_argument(
        "--ray",
        dest="ray_address",
        nargs="?",
        const="local",
        metavar="ADDRESS",
        help="embed on a Ray cluster: no ADDRESS starts a local one, 'auto' joins this machine's, or HOST:6379",
    )
    parser.add_argument("--ray-actors", type=int, help="embedding actors on the cluster (default from its resources)")


def _int_list(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _name_list(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {text!r}")
    return names


def _fail(command: str, exc: BaseException) -> int:
    if isinstance(exc, NothingToIndexError):
        _print_left_out(exc.skipped, exc.ignored)
    print(f"posapl index {command}: {exc}", file=sys.stderr)
    return EXIT_BUSY if isinstance(exc, StoreBusyError) else EXIT_FAILED


def _print_left_out(skipped: list[tuple[str, str]], ignored: list[tuple[str, str]]) -> None:
    """Every skipped file with its reason; ignored files (sidecars) by reason, listed in full in last-run.json."""
    for path, reason in skipped:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    for reason, count in Counter(reason for _, reason in ignored).most_common():
        print(f"ignored {count} file{'s' if count > 1 else ''}: {reason}", file=sys.stderr)


def _print_report(report: RunReport) -> None:
    print(summary(report))
    if report.full_rebuild:
        print(f"full rebuild: {report.full_rebuild}")
    _print_left_out(report.skipped, report.ignored)


def _after_publish(root: Path) -> None:
    """Run the installed `posapl.after_publish` hooks (saved-search monitoring) after a successful run.

    Also when nothing changed: a hook catches up on versions and deliveries an interrupted run left behind.
    They are found by entry point, so the index never imports the parts built on top of it; each hook reports
    and absorbs its own failures, as a published version must stay published.
    """
    for entry in entry_points(group="posapl.after_publish"):
        entry.load()(root)


def _build(args: argparse.Namespace) -> int:
    from index.job import run_update

    settings = settings_from_args(IndexSettings, args)
    try:
        config = settings.store_config()
        report = run_update(Path(settings.root), settings, config)
    except (StoreBusyError, IndexIntegrityError, ValueError, OSError, RuntimeError) as exc:
        return _fail("build", exc)
    _print_report(report)
    _after_publish(Path(settings.root))
    return EXIT_OK


def _with_added_inputs(root: Path, images: list[Path], captions: list[Path], stac: list[Path]) -> StoreConfig:
    """The store's config with new image folders / caption files / STAC catalogs appended (recorded ones stay
    first, so the numbering of existing sources does not change); `run_update` checks and saves it under the lock."""
    config = StoreConfig.load(root)
    sources = [*config.sources, *(p.resolve() for p in images if p.resolve() not in config.sources)]
    banks = [*config.captions, *(p.resolve() for p in captions if p.resolve() not in config.captions)]
    added = [catalog_file(p).resolve() for p in stac]
    catalogs = [*config.stac, *(p for p in added if p not in config.stac)]
    return config.model_copy(update={"sources": sources, "captions": banks, "stac": catalogs})


def _update(args: argparse.Namespace) -> int:
    from index.job import run_update

    settings = settings_from_args(IndexSettings, args)
    try:
        config = None
        if args.add_images or args.add_captions or args.stac:
            config = _with_added_inputs(settings.root, args.add_images or [], args.add_captions or [], args.stac or [])
        report = run_update(Path(settings.root), settings, config)
    except (StoreBusyError, IndexIntegrityError, ValueError, OSError, RuntimeError) as exc:
        return _fail("update", exc)
    _print_report(report)
    _after_publish(Path(settings.root))
    return EXIT_OK


def _root(args: argparse.Namespace) -> Path:
    """--root, else POSAPL_INDEX_ROOT (environment or .env), else data/index: the same rule in every verb."""
    return settings_from_args(IndexSettings, args).root


def _rollback(args: argparse.Namespace) -> int:
    root = _root(args)
    try:
        with store_lock(root):
            number = rollback(root)
    except (StoreBusyError, IndexIntegrityError, OSError) as exc:
        return _fail("rollback", exc)
    print(f"live version is now {number}")
    return EXIT_OK


def _status(args: argparse.Namespace) -> int:
    root = _root(args)
    store = IndexStore(root)
    try:
        config = StoreConfig.load(root)
        live = store.current_version()
        status = {
            "root": str(root.resolve()),
            "current": live,
            "versions": store.versions(),
            "sources": [str(s) for s in config.sources],
            "captions": [str(c) for c in config.captions],
            "stac": [str(c) for c in config.stac],
        }
        if live is not None:
            with store.open(live) as version:
                manifest = version.manifest
                status.update(
                    created=manifest.created,
                    fingerprint=manifest.fingerprint,
                    dim=manifest.dim,
                    counts=manifest.counts,
                    index=manifest.index,
                    profiles=manifest.raw.get("profiles"),
                )
        last = root / LAST_RUN
        if last.is_file():
            status["last_run"] = {
                k: v for k, v in json.loads(last.read_text()).items() if k not in ("skipped", "ignored")
            }
    except (IndexIntegrityError, ValueError, OSError) as exc:
        return _fail("status", exc)
    print(json.dumps(status, indent=2))
    return EXIT_OK


def _export(args: argparse.Namespace) -> int:
    from index.export import export_items

    try:
        with IndexStore(_root(args)).open() as version:
            count = export_items(version, args.out, args.format, args.embeddings)
    except (IndexIntegrityError, ValueError, OSError) as exc:
        return _fail("export", exc)
    print(f"exported {count} items of version {version.number} to {args.out}")
    return EXIT_OK


def register(subparsers: argparse._SubParsersAction) -> None:
    index = subparsers.add_parser("index", help="build and maintain the image archive index")
    commands = index.add_subparsers(dest="index_command", required=True, metavar="ACTION")

    build = commands.add_parser("build", help="create (or reconfigure) an index store and publish a version")
    build.add_argument("--images", type=Path, nargs="+", metavar="DIR", help="image folders")
    build.add_argument(
        "--stac",
        type=Path,
        nargs="+",
        metavar="PATH",
        help="STAC catalog.json / collection.json (walked recursively), an ItemCollection or item-per-line file; "
        "every item is one scene (re-read by every update)",
    )
    build.add_argument(
        "--band-folders",
        type=Path,
        nargs="+",
        metavar="DIR",
        help="folders of per-band files: the files of one scene (same text in place of the * of --band-files) are "
        "stacked as one scene; a Sentinel-2 .SAFE folder in them is one scene of its red, green and blue 10 m bands",
    )
    build.add_argument(
        "--band-files",
        type=_name_list,
        metavar="PATTERN[,PATTERN]",
        help="file name pattern of each band, in R,G,B order, e.g. '*_B04.tif,*_B03.tif,*_B02.tif'",
    )
    build.add_argument(
        "--stac-assets",
        type=_name_list,
        metavar="KEY[,KEY]",
        help="assets stacked as one scene per item, by key (B04,B03,B02) or eo:bands common name (red,green,blue); "
        "default: the visual asset",
    )
    build.add_argument("--out", dest="root", type=Path, metavar="ROOT", help=ROOT_HELP)
    build.add_argument("--checkpoint", help="POSAPL checkpoint directory (default: zero-shot base CLIP)")
    build.add_argument("--pretrained", help="open_clip tag or local weights file for the base model")
    build.add_argument("--arch", help="open_clip architecture name or JSON config (zero-shot only)")
    build.add_argument("--preset", choices=["rsitmd", "rsicd"])
    build.add_argument(
        "--captions",
        type=Path,
        nargs="+",
        metavar="FILE",
        help="caption bank: annotation JSON files and/or text files with one caption a line",
    )
    build.add_argument(
        "--ivf",
        dest="index_kind",
        action="store_const",
        const="ivf",
        help="IVF-Flat image index instead of exact search (archives above ~1M images)",
    )
    build.add_argument(
        "--index-kind",
        choices=list(INDEX_KINDS),
        help="image index (default auto: by size); sq8/ivf-sq8/ivf-pq keep codes in RAM and re-score exactly",
    )
    build.add_argument("--refine-factor", type=int, help="compressed kinds: K' x this candidates re-scored exactly")
    build.add_argument("--pq-m", type=int, help="ivf-pq: bytes of code per image (default dim / 8)")
    build.add_argument("--nlist", type=int, help="IVF lists (capped at images/39)")
    build.add_argument("--nprobe", type=int, help="IVF lists searched per query")
    build.add_argument("--max-pixels", type=int, help="larger images are skipped as decompression bombs")
    build.add_argument("--keep-versions", type=int, help="published versions kept on disk (default 3)")
    build.add_argument(
        "--profile-points",
        type=int,
        help="similarities kept per item for online re-ranking (default 64; 0 = whole profile, exact GaLR)",
    )
    build.add_argument(
        "--keep-missing", action="store_const", const=True, help="updates keep entries whose files have disappeared"
    )
    build.add_argument("--tile-sizes", type=_int_list, metavar="PX[,PX]", help="window sizes, e.g. 256,512")
    build.add_argument("--tile-overlap", type=float, help="fraction a window shares with its neighbour (default 0.25)")
    build.add_argument("--bands", type=_int_list, metavar="B,G,R", help="bands read as RGB (e.g. 4,3,2) or one as grey")
    build.add_argument("--min-valid", type=float, help="tiles with less of their pixels holding data are dropped")
    build.add_argument("--max-tiles-per-scene", type=int, help="larger scenes are skipped with the reason")
    _runtime_flags(build)
    build.set_defaults(func=_build)

    update = commands.add_parser("update", help="rescan the store's folders and publish a version if anything changed")
    update.add_argument("--root", type=Path, help=ROOT_HELP)
    update.add_argument(
        "--add-images",
        type=Path,
        nargs="+",
        metavar="DIR",
        help="also index these image folders from now on (recorded in ROOT/config.json)",
    )
    update.add_argument(
        "--add-captions",
        type=Path,
        nargs="+",
        metavar="FILE",
        help="add these caption files to the caption bank from now on (recorded in ROOT/config.json)",
    )
    update.add_argument(
        "--stac",
        type=Path,
        nargs="+",
        metavar="PATH",
        help="also index these STAC catalogs from now on (recorded ones are re-read by every update anyway)",
    )
    _runtime_flags(update)
    update.set_defaults(func=_update)

    back = commands.add_parser("rollback", help="make the previous version live again")
    back.add_argument("--root", type=Path, help=ROOT_HELP)
    back.set_defaults(func=_rollback)

    status = commands.add_parser("status", help="print the live version's manifest summary as JSON")
    status.add_argument("--root", type=Path, help=ROOT_HELP)
    status.set_defaults(func=_status)

    export = commands.add_parser(
        "export", help="write every item of the live version as GeoParquet, FlatGeobuf or GeoJSON"
    )
    export.add_argument("--root", type=Path, help=ROOT_HELP)
    export.add_argument("--format", choices=("geoparquet", "flatgeobuf", "geojson"), default="geoparquet")
    export.add_argument("--embeddings", action="store_true", help="add the stored vectors (GeoParquet only)")
    export.add_argument("out", type=Path, help="file to write")
    export.set_defaults(func=_export)
