"""What the service derives from a whole index version (a spatial index of its scenes, its STAC collections) is
built once, on first use, and dropped with the version: versions are immutable, so it never goes stale."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import TypeVar

from index.store import IndexVersion

T = TypeVar("T")


def per_version(build: Callable[[IndexVersion], T]) -> Callable[[IndexVersion], T]:
    """`build` memoised per version, held weakly; concurrent first calls build once (under a lock)."""
    built: weakref.WeakKeyDictionary[IndexVersion, T] = weakref.WeakKeyDictionary()
    lock = threading.Lock()

    def get(version: IndexVersion) -> T:
        with lock:
            if version not in built:
                built[version] = build(version)
            return built[version]

    return get
