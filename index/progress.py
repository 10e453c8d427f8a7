"""Progress reporting of the index job: a bar with rate and ETA for every step that loops over items, and
a start/finish line with the elapsed time for single calls that cannot report progress (FAISS training,
writing and verifying a version). A first build of a large archive takes many minutes; silence for that
long looks like a hang. Everything goes to stderr and is off when `progress` is false (tests, cron).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from tqdm import tqdm


def bar(total: int, desc: str, unit: str, enabled: bool) -> tqdm:
    """A tqdm bar showing count, rate and ETA."""
    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, dynamic_ncols=True, file=sys.stderr)


@contextmanager
def stage(what: str, enabled: bool) -> Iterator[None]:
    """`what …` before a step and `what: done in N s` after it."""
    if not enabled:
        yield
        return
    print(f"{what} …", file=sys.stderr, flush=True)
    started = time.perf_counter()
    yield
    print(f"{what}: done in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
