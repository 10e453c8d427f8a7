"""The reindex container's scheduler (docker/nightly.py, installed in the images as posapl-nightly)."""

from __future__ import annotations

import importlib.util
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from datetime import time as clock_time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "docker" / "nightly.py"
_spec = importlib.util.spec_from_file_location("posapl_nightly", SCRIPT)
nightly = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = nightly  # pydantic resolves the settings' annotations through sys.modules
_spec.loader.exec_module(nightly)


def run_script(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout)


def test_next_run_is_today_when_the_time_is_still_ahead() -> None:
    now = datetime(2026, 3, 10, 1, 0, tzinfo=UTC)
    assert nightly.next_run(now, clock_time(2, 30), ZoneInfo("UTC")) == datetime(2026, 3, 10, 2, 30, tzinfo=UTC)


@pytest.mark.parametrize("now_time", [clock_time(2, 30), clock_time(23, 59)])
def test_next_run_is_tomorrow_at_or_after_the_time(now_time: clock_time) -> None:
    now = datetime.combine(datetime(2026, 3, 10).date(), now_time, tzinfo=UTC)
    assert nightly.next_run(now, clock_time(2, 30), ZoneInfo("UTC")) == datetime(2026, 3, 11, 2, 30, tzinfo=UTC)


def test_next_run_keeps_the_local_time_across_a_dst_change() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    # Evening before the autumn change (CEST, UTC+2); the next 03:30 falls after it (CET, UTC+1).
    now = datetime(2026, 10, 24, 22, 0, tzinfo=berlin)
    run = nightly.next_run(now, clock_time(3, 30), berlin)
    assert (run.date(), run.time()) == (datetime(2026, 10, 25).date(), clock_time(3, 30))
    assert run.astimezone(UTC) == datetime(2026, 10, 25, 2, 30, tzinfo=UTC)


def test_next_run_reads_now_in_the_schedule_time_zone() -> None:
    # 21:30 UTC is 23:30 in Berlin, so 23:00 Berlin time has passed today even though 23:00 UTC has not.
    now = datetime(2026, 10, 24, 21, 30, tzinfo=UTC)
    run = nightly.next_run(now, clock_time(23, 0), ZoneInfo("Europe/Berlin"))
    assert run.astimezone(UTC) == datetime(2026, 10, 25, 22, 0, tzinfo=UTC)


def test_next_run_needs_an_aware_time() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        nightly.next_run(datetime(2026, 1, 1), clock_time(2, 30), ZoneInfo("UTC"))


@pytest.mark.parametrize("at", ["2.30", "25:00", "02:60", "2:30", "", "02:30:00:00"])
def test_invalid_time_of_day_is_rejected(at: str) -> None:
    result = run_script("--at", at, "--once", "--", "true")
    assert result.returncode == 2
    assert "invalid settings" in result.stderr


def test_unknown_time_zone_is_rejected_by_name() -> None:
    result = run_script("--timezone", "Mars/Olympus", "--once", "--", "true")
    assert result.returncode == 2 and "unknown time zone 'Mars/Olympus'" in result.stderr


def test_missing_command_is_rejected() -> None:
    result = run_script("--once")
    assert result.returncode == 2 and "no command given" in result.stderr


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSAPL_REINDEX_AT", "04:15")
    monkeypatch.setenv("POSAPL_REINDEX_TZ", "Europe/Berlin")
    settings = nightly.NightlySettings()
    assert (settings.at, settings.tz) == (clock_time(4, 15), "Europe/Berlin")


def test_once_runs_now_and_returns_the_command_exit_code() -> None:
    result = run_script("--once", "--", sys.executable, "-c", "print('ran'); raise SystemExit(3)")
    assert result.returncode == 3
    assert "ran" in result.stdout and "finished with exit code 3" in result.stdout


def test_command_that_cannot_start_is_reported() -> None:
    result = run_script("--once", "--", "/nonexistent/posapl")
    assert result.returncode == 127 and "cannot start" in result.stdout


def test_loop_runs_at_the_time_and_stops_on_sigterm(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    at = (datetime.now(UTC) + timedelta(seconds=4)).strftime("%H:%M:%S")
    command = [sys.executable, "-c", f"open({str(marker)!r}, 'a').write('x')"]
    process = subprocess.Popen(
        [sys.executable, str(SCRIPT), "--at", at, "--", *command], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while not marker.exists() and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.1)
        assert marker.exists(), "the scheduled run did not happen"
        time.sleep(0.5)
        assert process.poll() is None, "the loop must keep running after a run"
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=10)
    finally:
        process.kill()
    assert process.returncode == 0
    assert marker.read_text() == "x"
    assert "next run at" in output and output.rstrip().endswith("stopped")
