"""The live index version: loading, validation, polling for a new CURRENT, and the atomic swap.

Requests take a reference to the current `IndexVersion` once (`snapshot()`) and use only that object, so
a swap never changes an index under a running request: the old version stays alive until its last user
drops it. Opening and checksum-verifying a version is slow file I/O and runs in a worker thread.
A version whose files fail verification, or that was built by a different model than the one serving,
is refused with a logged reason and the previous version keeps serving.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from index.layout import MANIFEST
from index.store import IndexIntegrityError, IndexStore, IndexVersion
from service.errors import ServiceError, redact_paths
from service.metrics import ServiceMetrics

log = logging.getLogger(__name__)


class ModelMismatchError(IndexIntegrityError):
    """The index was embedded by another model than the one this server runs."""


@dataclass(frozen=True)
class ReloadOutcome:
    changed: bool
    version: int | None
    previous: int | None
    message: str
    refused: bool = False


class LiveIndex:
    """Holds the serving `IndexVersion` and replaces it when a newer valid one is published."""

    def __init__(self, store: IndexStore, fingerprint: str, metrics: ServiceMetrics, use_gpu: bool = False) -> None:
        self.store = store
        self.fingerprint = fingerprint
        self.metrics = metrics
        self.use_gpu = use_gpu
        self._current: IndexVersion | None = None
        self._reason = "the index has not been loaded yet"
        self._refused: dict[tuple[int, tuple[int, int] | None], str] = {}
        self._lock = asyncio.Lock()

    @property
    def current(self) -> IndexVersion | None:
        return self._current

    @property
    def reason(self) -> str | None:
        """Why no index is being served (None when one is); public (readiness), so without server paths."""
        return None if self._current is not None else redact_paths(self._reason, (self.store.root,))

    def snapshot(self) -> IndexVersion:
        """The version a request should use from start to end; 503 when none is loaded."""
        version = self._current
        if version is None:
            raise ServiceError(503, "index_unavailable", f"no index is loaded: {self._reason}", {"Retry-After": "5"})
        return version

    def _open(self, number: int) -> IndexVersion:
        version = self.store.open(number)
        if version.manifest.fingerprint != self.fingerprint:
            version.close()
            raise ModelMismatchError(
                f"index version {number} was built with model {version.manifest.fingerprint[:12]}, but this server "
                f"runs model {self.fingerprint[:12]}; rebuild the index with this model or serve the model it was "
                "built with"
            )
        if self.use_gpu:
            version.to_gpu()
        return version

    async def reload(self, force: bool = False) -> ReloadOutcome:
        """Switch to the version CURRENT names, if it is new (or `force`) and valid.

        Without `force` a version refused before is not retried on every poll; the admin endpoint forces.
        """
        async with self._lock:
            previous = self._current.number if self._current is not None else None
            try:
                wanted = await asyncio.to_thread(self.store.current_version)
            except IndexIntegrityError as exc:
                return self._refuse(None, previous, str(exc))
            if wanted is None:
                if self._current is None:
                    self._reason = "no index version is published under the configured index root yet"
                return ReloadOutcome(False, previous, previous, "nothing is published under the index root")
            if wanted == previous:
                return ReloadOutcome(False, previous, previous, f"version {wanted} is already live")
            key = (wanted, self._identity(wanted))
            if key in self._refused and not force:
                return ReloadOutcome(False, previous, previous, self._refused[key], refused=True)
            try:
                version = await asyncio.to_thread(self._open, wanted)
            except IndexIntegrityError as exc:
                return self._refuse(key, previous, str(exc))
            self._current = version
            self._refused.pop(key, None)
            self.metrics.index_version.set(wanted)
            self.metrics.reloads.labels("swapped").inc()
            log.info("index swapped: version %s -> %d (%s)", previous, wanted, self.store.version_path(wanted))
            return ReloadOutcome(True, wanted, previous, f"now serving version {wanted}")

    def _identity(self, number: int) -> tuple[int, int] | None:
        """Which folder a version number names right now: a refused number can be reused by a later publish."""
        try:
            stat = (self.store.version_path(number) / MANIFEST).stat()
        except OSError:
            return None
        return stat.st_ino, stat.st_mtime_ns

    def _refuse(
        self, key: tuple[int, tuple[int, int] | None] | None, previous: int | None, reason: str
    ) -> ReloadOutcome:
        self.metrics.reloads.labels("refused").inc()
        number = key[0] if key is not None else None
        if key is not None:
            self._refused[key] = f"version {number} refused: {reason}"
        if self._current is None:
            self._reason = reason
        log.error("index version %s refused, still serving %s: %s", number, previous, reason)
        return ReloadOutcome(False, previous, previous, f"version {number} refused: {reason}", refused=True)

    async def poll_forever(self, interval_s: float) -> None:
        """Background task: notice a new CURRENT without anyone calling the admin endpoint."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.reload()
            except Exception:  # the poller must survive anything; the next poll tries again
                log.exception("index poll failed")
