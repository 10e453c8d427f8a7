"""The run's image vectors, written to disk as the plan collects them and read back as a memory map.

An indexing run gathers one float32 vector per item (reused from the live version or freshly embedded) in the
order the plan lists the records. Holding them in a Python list and stacking it kept the whole run's vectors
in RAM twice; the spool instead appends them to a plain float32 file in the store's staging area a buffer at a
time, and `finish` maps that file, so the FAISS build (index.vectors), the profiles (index.profiles) and the
vector file a version publishes (index.vector_file) read it a chunk at a time and the kernel's page cache, not
the process, holds what is being read.

The file lives in a ROOT/staging-* folder, so a run killed half-way leaves nothing that the next run's
`remove_staging` does not delete; a run that finishes or fails removes it itself (`remove`). Rows stay in the
plan's order: the index build samples and adds rows in that order, so the version is the one an in-RAM array
gives, bit for bit. The published vector file is sorted by id (readers binary-search it), which is why publish
writes it from this map rather than moving the spool into place.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

SPOOL_FILE = "image_vectors.f32"
BUFFER_ROWS = 4096  # rows gathered before one write: 8 MiB of float32 at 512 d


class VectorSpool:
    """Append-only float32 rows of width `dim` in `folder`/SPOOL_FILE; `finish` maps them read-only."""

    def __init__(self, folder: Path, dim: int, buffer_rows: int = BUFFER_ROWS) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder, self.path, self.dim = folder, folder / SPOOL_FILE, dim
        self._handle = open(self.path, "wb")
        self._buffer = np.empty((buffer_rows, dim), dtype=np.float32)
        self._buffered = 0
        self._written = 0

    def __len__(self) -> int:
        return self._written + self._buffered

    def append(self, vector: np.ndarray) -> None:
        """Add one row (copied: the caller's array, e.g. a view of the live version's map, is not kept)."""
        if self._handle.closed:
            raise ValueError(f"{self.path} is finished; no more rows can be added")
        self._buffer[self._buffered] = vector
        self._buffered += 1
        if self._buffered == len(self._buffer):
            self._flush()

    def _flush(self) -> None:
        self._handle.write(self._buffer[: self._buffered].tobytes())
        self._written += self._buffered
        self._buffered = 0

    def finish(self) -> np.ndarray:
        """The rows as a read-only (N, dim) float32 memory map of the file (an empty array when N is 0)."""
        if not self._handle.closed:
            self._flush()
            self._handle.close()
        if self._written == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.memmap(self.path, dtype=np.float32, mode="r", shape=(self._written, self.dim))

    def remove(self) -> None:
        """Delete the file and its folder (maps of it stay readable until dropped: the kernel keeps the pages)."""
        self._handle.close()
        shutil.rmtree(self.folder, ignore_errors=True)
