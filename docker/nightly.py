#!/usr/bin/env python3
"""posapl-nightly: run a command every day at a fixed wall-clock time, inside the reindex container.

Why a loop and not cron: the container then needs no cron daemon, no root and no host crontab; it logs to
stdout like every other service, stops promptly on SIGTERM (forwarding it to a running job, which is
crash-safe), and `--once` runs one cycle immediately, so the exact command the container runs can be tested
without waiting for the night.

    posapl-nightly --at 02:30 --timezone Europe/Berlin -- posapl index update --root /srv/posapl/index

Runs never overlap (the loop waits for each one); a failed run is logged and retried the next night, since
the index job leaves the live version untouched when it fails. Exit codes: with `--once` the command's own
exit code; otherwise 0 after SIGTERM/SIGINT; 2 for invalid settings.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from datetime import time as clock_time
from types import FrameType
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROG = "posapl-nightly"
EXIT_USAGE = 2
# Re-read the wall clock at least this often while waiting, so a clock change or a suspended host
# delays the run by at most this much instead of by the whole sleep.
MAX_NAP_S = 60.0


class NightlySettings(BaseSettings):
    """When to run: flags override `POSAPL_REINDEX_AT` / `POSAPL_REINDEX_TZ`, which override the defaults."""

    model_config = SettingsConfigDict(env_prefix="POSAPL_REINDEX_", extra="ignore")

    at: clock_time = clock_time(2, 30)
    tz: str = "UTC"

    @field_validator("at", mode="before")
    @classmethod
    def _parse_at(cls, value: object) -> object:
        """Accept HH:MM or HH:MM:SS only, so a typo such as '2.30' or '25:00' is rejected, not guessed."""
        if isinstance(value, str):
            parts = value.strip().split(":")
            if len(parts) not in (2, 3) or not all(p.isdigit() and len(p) == 2 for p in parts):
                raise ValueError(f"expected HH:MM or HH:MM:SS, got {value!r}")
            try:
                return clock_time(*(int(p) for p in parts))
            except ValueError as exc:
                raise ValueError(f"not a time of day: {value!r} ({exc})") from None
        return value

    @field_validator("tz")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        zone(value)
        return value


def zone(name: str) -> ZoneInfo:
    """The IANA time zone `name`, or a ValueError that names it (zoneinfo's own error is a bare KeyError)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r} (use an IANA name such as UTC or Europe/Berlin)") from None


def next_run(now: datetime, at: clock_time, tz: ZoneInfo) -> datetime:
    """The first moment strictly after `now` when the clock in `tz` shows `at`.

    The day is advanced on the calendar rather than by adding 24 hours, so the run stays at the same local
    time across daylight-saving changes; comparisons are made in UTC because Python compares datetimes that
    share a tzinfo by their local fields, which is wrong across a DST change.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    local_day = now.astimezone(tz).date()
    for offset in (0, 1, 2):
        candidate = datetime.combine(local_day + timedelta(days=offset), at, tzinfo=tz)
        if candidate.astimezone(UTC) > now.astimezone(UTC):
            return candidate
    raise AssertionError("unreachable: a time of day recurs within two days")


def log(message: str) -> None:
    print(f"{datetime.now(UTC).isoformat(timespec='seconds')} {PROG}: {message}", flush=True)


class Scheduler:
    """Runs `command` at each `next_run`; SIGTERM/SIGINT stop the wait and are forwarded to a running job."""

    def __init__(self, command: list[str], settings: NightlySettings) -> None:
        self.command = command
        self.settings = settings
        self.tz = zone(settings.tz)
        self.stop = threading.Event()
        self.child: subprocess.Popen[bytes] | None = None

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.stop.set()
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signum)

    def run_now(self) -> int:
        """Run the command once in the foreground and return its exit code."""
        log(f"running: {' '.join(self.command)}")
        started = time.monotonic()
        try:
            self.child = subprocess.Popen(self.command)
        except OSError as exc:
            log(f"cannot start {self.command[0]!r}: {exc}")
            return 127
        code = self.child.wait()
        self.child = None
        log(f"finished with exit code {code} in {time.monotonic() - started:.1f}s")
        return code

    def wait_until(self, target: datetime) -> bool:
        """Sleep until `target`; False when asked to stop first."""
        while not self.stop.is_set():
            remaining = (target.astimezone(UTC) - datetime.now(UTC)).total_seconds()
            if remaining <= 0:
                return True
            self.stop.wait(min(remaining, MAX_NAP_S))
        return False

    def loop(self) -> int:
        while True:
            target = next_run(datetime.now(UTC), self.settings.at, self.tz)
            log(f"next run at {target.isoformat(timespec='seconds')}")
            if not self.wait_until(target):
                break
            self.run_now()
            if self.stop.is_set():
                break
        log("stopped")
        return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Run COMMAND every day at a fixed time of day (the reindex container's scheduler).",
        epilog="example: posapl-nightly --at 02:30 -- posapl index update --root /srv/posapl/index",
    )
    parser.add_argument("--at", help="time of day, HH:MM or HH:MM:SS (default 02:30; env POSAPL_REINDEX_AT)")
    parser.add_argument("--timezone", help="IANA time zone of --at (default UTC; env POSAPL_REINDEX_TZ)")
    parser.add_argument("--once", action="store_true", help="run COMMAND now, once, and exit with its exit code")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command to run, after --")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        print(f"{PROG}: no command given (put it after --)", file=sys.stderr)
        return EXIT_USAGE
    overrides = {k: v for k, v in (("at", args.at), ("tz", args.timezone)) if v is not None}
    try:
        settings = NightlySettings(**overrides)
    except ValidationError as exc:
        print(f"{PROG}: invalid settings:\n{exc}", file=sys.stderr)
        return EXIT_USAGE
    scheduler = Scheduler(command, settings)
    scheduler.install_signal_handlers()
    return scheduler.run_now() if args.once else scheduler.loop()


if __name__ == "__main__":
    sys.exit(main())
