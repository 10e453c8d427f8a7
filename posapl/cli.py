"""The `posapl` command. Each part of the product registers its own subcommands through the
`posapl.commands` entry-point group, so the core never imports training, index or service code."""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import entry_points
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

S = TypeVar("S", bound=BaseModel)


def settings_from_args(settings_cls: type[S], args: argparse.Namespace) -> S:
    """Flags override `POSAPL_*` environment variables, which override defaults; unset flags are None."""
    fields = settings_cls.model_fields
    given: dict[str, Any] = {k: v for k, v in vars(args).items() if k in fields and v is not None}
    return settings_cls(**given)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="posapl", description="Remote-sensing image-text retrieval with POSAPL")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for entry in sorted(entry_points(group="posapl.commands"), key=lambda e: e.name):
        try:
            register = entry.load()
        except ImportError as exc:
            print(f"posapl: the {entry.name!r} commands are unavailable: {exc}", file=sys.stderr)
            continue
        register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ValidationError as exc:
        print(f"posapl {args.command}: invalid settings:\n{exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
