"""A version's image vectors as plain .npy files on disk, memory-mapped by every reader.

Compressed indexes (index.vectors: sq8, ivf-sq8, ivf-pq) keep only codes in RAM, so the exact scores of a
short list (refine), of a filter's few matches and of "search with this indexed image" come from here. The
files are read with numpy's mmap, so the pages are the kernel's page cache: several worker processes (and
replicas on one host) serving the same version share one copy, and a 10M-item archive costs RAM only for the
rows actually read. Rows are sorted by id, so finding an id is a binary search, with no id -> row table in RAM.
The vectors stay float32: exact search must give the same scores from here as from a flat index.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.lib.format import open_memmap

WRITE_CHUNK = 65_536  # rows gathered and written at a time: 128 MiB of float32 at 512 d


def write_vector_files(
    ids_path: Path, vectors_path: Path, ids: np.ndarray, vectors: np.ndarray, chunk: int = WRITE_CHUNK
) -> None:
    """Write `ids` ascending and their `vectors` in the same order, a chunk at a time: `vectors` may itself be
    a memory map, and no second full copy of it is made."""
    ids = np.asarray(ids, dtype=np.int64)
    if vectors.ndim != 2 or len(vectors) != len(ids):
        raise ValueError(f"vectors {vectors.shape} and ids {ids.shape} do not match")
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    if len(sorted_ids) > 1 and (np.diff(sorted_ids) == 0).any():
        raise ValueError("image ids must be unique")
    np.save(ids_path, sorted_ids)
    out = open_memmap(vectors_path, mode="w+", dtype=np.float32, shape=(len(ids), vectors.shape[1]))
    for start in range(0, len(ids), chunk):
        rows = order[start : start + chunk]
        out[start : start + len(rows)] = vectors[rows]
    out.flush()
    del out


class VectorFile:
    """Read-only view of a version's image vectors; safe to share between threads (numpy reads only)."""

    def __init__(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """`ids` ascending and their `vectors` in that order; `open` maps them from a version's files."""
        self.ids, self.vectors = ids, vectors
        if self.ids.ndim != 1 or self.vectors.ndim != 2 or len(self.ids) != len(self.vectors):
            raise ValueError(f"{len(self.ids)} ids for {self.vectors.shape} vectors")
        if self.vectors.dtype != np.float32 or self.ids.dtype != np.int64:
            raise ValueError(f"vectors must be float32 and ids int64, got {self.vectors.dtype} and {self.ids.dtype}")

    @classmethod
    def open(cls, ids_path: Path, vectors_path: Path) -> VectorFile:
        """The files `write_vector_files` wrote, memory-mapped."""
        # plain ndarray views of the maps (the map stays open through .base), so slices are ordinary arrays
        return cls(np.asarray(np.load(ids_path, mmap_mode="r")), np.asarray(np.load(vectors_path, mmap_mode="r")))

    @classmethod
    def from_index(cls, ids: np.ndarray, vectors: np.ndarray) -> VectorFile:
        """Vectors reconstructed from a FAISS index (a version written before the vector files), held in RAM."""
        order = np.argsort(ids, kind="stable")
        return cls(np.ascontiguousarray(ids[order], dtype=np.int64), np.ascontiguousarray(vectors[order], np.float32))

    def __len__(self) -> int:
        return len(self.ids)

    def rows(self, ids: np.ndarray) -> np.ndarray:
        """Row of each id; KeyError names the first id that is not stored."""
        ids = np.asarray(ids, dtype=np.int64)
        rows = np.searchsorted(self.ids, ids)
        clipped = np.minimum(rows, max(len(self.ids) - 1, 0))
        missing = (rows >= len(self.ids)) | (self.ids[clipped] != ids) if len(self.ids) else np.ones(ids.shape, bool)
        if missing.any():
            raise KeyError(int(ids[missing][0]))
        return rows

    def get(self, ids: np.ndarray) -> np.ndarray:
        """The stored float32 vectors of `ids` (any shape; one more axis of size dim), read from the map."""
        ids = np.asarray(ids, dtype=np.int64)
        rows = self.rows(ids.ravel())
        order = np.argsort(rows, kind="stable")  # ascending rows read the file forwards
        out = np.empty((len(rows), self.vectors.shape[1]), dtype=np.float32)
        out[order] = self.vectors[rows[order]]
        return out.reshape(*ids.shape, self.vectors.shape[1])
