"""`posapl keys add NAME` and `posapl monitor run|deliver`, and the hook `posapl index` calls after publishing.

The state database is found like the index store: --root or POSAPL_INDEX_ROOT (ROOT/state.sqlite), unless
POSAPL_STATE_DB names a shared one.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from monitor import matching, webhooks
from monitor.db import StateUnavailableError, open_engine
from monitor.keys import add_key
from monitor.settings import MonitorSettings
from posapl.cli import settings_from_args

ROOT_HELP = "index store root (default: POSAPL_INDEX_ROOT, else data/index); holds state.sqlite"


def run_monitor(settings: MonitorSettings) -> str:
    """Evaluate saved searches on unseen versions, record matches, then deliver webhooks (in that order)."""
    engine = open_engine(settings)
    evaluations = matching.evaluate(engine, settings.root, settings.feedback_background)
    webhooks.queue_new_matches(engine)
    counts = webhooks.deliver_due(engine, settings)
    recorded = sum(e.recorded for e in evaluations)
    return (
        f"saved searches: {len(evaluations)} evaluation(s), {recorded} new match(es); webhooks: "
        f"{counts['delivered']} delivered, {counts['failed']} given up, {counts['pending']} pending"
    )


def after_publish(root: Path) -> None:
    """Called by `posapl index build|update` after it published a version; never fails the publish."""
    try:
        print(run_monitor(MonitorSettings(root=root)))
    except (StateUnavailableError, OSError, ValueError, RuntimeError) as exc:
        print(f"posapl monitor: saved searches not evaluated ({exc}); `posapl monitor run` retries", file=sys.stderr)


def _keys_add(args: argparse.Namespace) -> int:
    settings = settings_from_args(MonitorSettings, args)
    try:
        key = add_key(open_engine(settings), args.name)
    except (StateUnavailableError, ValueError) as exc:
        print(f"posapl keys add: {exc}", file=sys.stderr)
        return 1
    print(f"API key {args.name!r} (shown once; only its hash is stored):")
    print(key)
    return 0


def _run(args: argparse.Namespace) -> int:
    try:
        print(run_monitor(settings_from_args(MonitorSettings, args)))
    except StateUnavailableError as exc:
        print(f"posapl monitor: {exc}", file=sys.stderr)
        return 1
    return 0


def _deliver(args: argparse.Namespace) -> int:
    settings = settings_from_args(MonitorSettings, args)
    try:
        counts = webhooks.deliver_due(open_engine(settings), settings)
    except StateUnavailableError as exc:
        print(f"posapl monitor deliver: {exc}", file=sys.stderr)
        return 1
    print(f"webhooks: {counts['delivered']} delivered, {counts['failed']} given up, {counts['pending']} pending")
    return 0


def register_keys(subparsers: argparse._SubParsersAction) -> None:
    keys = subparsers.add_parser("keys", help="API keys of the saved-search endpoints")
    actions = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="create a key; it is printed once, alone on the last line")
    add.add_argument("name")
    add.add_argument("--root", type=Path, help=ROOT_HELP)
    add.set_defaults(func=_keys_add)


def register(subparsers: argparse._SubParsersAction) -> None:
    monitor = subparsers.add_parser("monitor", help="saved searches: evaluate new versions, deliver webhooks")
    actions = monitor.add_subparsers(dest="monitor_command", required=True, metavar="ACTION")
    run = actions.add_parser("run", help="evaluate unseen versions, record matches, deliver webhooks")
    run.add_argument("--root", type=Path, help=ROOT_HELP)
    run.set_defaults(func=_run)
    deliver = actions.add_parser("deliver", help="retry pending webhook deliveries that are due")
    deliver.add_argument("--root", type=Path, help=ROOT_HELP)
    deliver.set_defaults(func=_deliver)
