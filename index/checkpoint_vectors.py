"""The vectors of a run's embedding checkpoints, read from the batch files when asked for, not all at once.

A first build of a large archive embeds every item, so holding each checkpoint's vectors from the moment
index.embed.WorkLog.load reads them kept the whole run's new vectors in RAM until the plan had copied them
into its spool (index.vector_spool). This mapping remembers only where each item's row is (batch file, row)
and reads a batch's vectors again when one of its rows is wanted, keeping the few batches last read: the plan
asks in the order the items were embedded, so each batch is read about once.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np

CACHED_BATCHES = 8  # batches kept after a read; out-of-order asks (a cluster's batches) rarely reach further


class CheckpointVectors(Mapping[str, np.ndarray]):
    """Item key -> its float32 vector, in one of the batch files; a later batch's row wins over an earlier one's."""

    def __init__(self) -> None:
        self._where: dict[str, tuple[Path, int]] = {}
        self._cache: OrderedDict[Path, np.ndarray] = OrderedDict()

    def add(self, path: Path, keys: list[str]) -> None:
        """Record that row i of `path`'s vectors belongs to keys[i] (the file was checked when it was loaded)."""
        self._where.update((key, (path, row)) for row, key in enumerate(keys))

    def _batch(self, path: Path) -> np.ndarray:
        if path in self._cache:
            self._cache.move_to_end(path)
        else:
            with np.load(path, allow_pickle=False) as data:
                self._cache[path] = data["vectors"]
            if len(self._cache) > CACHED_BATCHES:
                self._cache.popitem(last=False)
        return self._cache[path]

    def __getitem__(self, key: str) -> np.ndarray:
        path, row = self._where[key]
        return self._batch(path)[row]

    def __contains__(self, key: object) -> bool:
        return key in self._where

    def __iter__(self) -> Iterator[str]:
        return iter(self._where)

    def __len__(self) -> int:
        return len(self._where)
