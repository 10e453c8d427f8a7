"""Read side of the index store: the only code that parses a published version (the service uses it). The
records it returns are in index.records, the manifest and its checks in index.manifest, the metadata (SQLite)
queries of a version in index.store_queries.

Contract (names are stable; see index.layout for the files):

    IndexIntegrityError(ValueError)       a version is missing, incomplete or its checksums do not match
    IndexStore(root)
        .root: Path
        .current_version() -> int | None      number in ROOT/CURRENT, None when nothing is published
        .versions() -> list[int]              complete version folders on disk, ascending
        .open(n: int | None = None, verify=True) -> IndexVersion     n=None: the current version
    open_version(root, n=None, verify=True) -> IndexVersion        same as IndexStore(root).open(n)

    IndexVersion (read-only; safe to share between threads; close() or use as a context manager)
        .number: int, .path: Path, .manifest: Manifest
        .image_index: faiss.Index     ids = image ids (int64), vectors L2-normalised -> inner product = cosine
        .caption_index: faiss.Index   ids = caption ids (int64)
        .search_images(queries (Q,D) float32, k) -> (scores (Q,k) float32, ids (Q,k) int64; -1 = no result);
                                               compressed kinds re-score a short list exactly (index.image_search)
        .search_captions(queries, k) -> same, over the caption bank
        .search_images_in(queries, k, ids) -> same, ranking only the given image ids (a filter's matches), all
                                               of them eligible: exact scoring of their stored vectors for a
                                               small set, a FAISS search restricted by an ID selector for a
                                               large one (SUBSET_EXACT_MAX is the measured crossover)
        .image_ids_in_time(min_mtime, max_mtime, among=None) -> int64 ids whose mtime is within the bounds
                                               (None = open), optionally only among given ids
        .image_ids_acquired(start, end) -> int64 ids whose acquisition time (ISO-8601) is within the bounds
        .ids_in_area(bbox, geometry) -> int64 ids whose WGS84 footprint intersects a lon/lat box (west > east:
                                               across the antimeridian) and/or a valid geometry
        .image_ids_by_gsd(low, high) -> int64 ids whose ground sample distance is within the bounds
        .image_ids_of_scenes(scene_ids) -> int64 ids of every item of those scenes
        .image_vectors(ids) -> (N,D) float32    stored vectors (e.g. to query with an indexed image), read from
                                               the memory-mapped vector file; KeyError for an unknown id
        .all_image_vectors() -> (ids, vectors) every stored vector, ids ascending (views of the memory map)
        .image(id) -> ImageRecord              KeyError when unknown;  .images(ids) -> list[ImageRecord | None]
        .all_images() -> list[ImageRecord];  .all_captions() -> list[CaptionRecord]
        .image_ids() / .caption_ids() -> int64 arrays;  .skipped() -> [(path, reason)] of files left out
        .has_time_sources: bool                False for versions written before items recorded time_source
                                               (their records read with time_source None)
        .image_path(id) -> Path                absolute path: manifest.sources[record.source] / record.path
        .caption(id) -> CaptionRecord          KeyError when unknown;  .captions(ids) -> list[CaptionRecord | None]
        .caption_texts(ids) -> list[str]        KeyError when one is unknown
        .image_profiles(ids) -> (N,P) float32  re-ranking profile of each image against the caption bank
        .caption_profiles(ids) -> (N,P)        re-ranking profile of each caption against the image archive
                                               (KeyError for an unknown id, -1 included; P = 0 and
                                               manifest.raw["profiles"]["method"] is None when none were built)
        .scene(id) -> SceneRecord              KeyError when unknown;  .scenes(ids) -> list[SceneRecord | None]
        .stac(scene_ids) -> {scene id: StacRecord} of the scenes made from STAC items (index.stac_meta)
        .image_ids_by_stac(collections, cloud_cover_max, platforms) -> int64 ids whose item matches (None = any)
        .scene_footprints() -> [(id, GeoJSON text | None)] of every scene, in archive order (folder, path)
        .to_gpu() -> None                      move the FAISS indexes to GPU 0 when faiss sees a GPU (the image index
                                               of hnsw, sq8 and ivf-pq stays on the CPU)

    Manifest: format, version, created (ISO-8601 UTC), model (fingerprint, checkpoint, pretrained, arch, preset),
        fingerprint (shortcut), dim, counts (images, captions, skipped, duplicates), index (kind, its parameters
        such as nlist/nprobe or hnsw_m/ef_search, measured recall; see index.vectors),
        sources (absolute image folders), caption_sources, files ({name: {sha256, bytes}}), raw (the dict)

A reader that fails to open a new version (IndexIntegrityError) should keep serving the version it has.
Versions are immutable once published, so the SQLite file is opened read-only and immutable.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import faiss
import numpy as np

from index.image_search import SUBSET_EXACT_MAX as SUBSET_EXACT_MAX  # re-exported: callers import it here
from index.image_search import ImageSearch, read_faiss
from index.layout import (
    CAPTIONS_INDEX,
    CURRENT,
    IMAGE_IDS,
    IMAGE_VECTORS,
    IMAGES_INDEX,
    MANIFEST,
    META,
    PREVIOUS_FORMAT,
    PROFILES,
    VERSIONS,
)
from index.manifest import IndexIntegrityError, read_manifest, verify_files
from index.records import IMAGE_COLUMNS, SCENE_COLUMNS
from index.records import CaptionRecord as CaptionRecord  # the record types are re-exported: callers import
from index.records import ImageRecord as ImageRecord  # them from here
from index.records import SceneRecord as SceneRecord
from index.stac_meta import StacRecord as StacRecord
from index.stac_meta import has_stac
from index.store_queries import MetadataQueries, has_column
from index.vector_file import VectorFile
from index.vectors import set_search_parameter, stored_vectors


class IndexVersion(MetadataQueries):
    """One published version, loaded and checked; see the module docstring for the contract. Its metadata
    queries (records, filters, footprints) are index.store_queries.MetadataQueries."""

    def __init__(self, number: int, path: Path, verify: bool = True, mmap: bool = True) -> None:
        self.number = number
        self.path = path
        self.manifest = read_manifest(path / MANIFEST)
        if self.manifest.version != number:
            raise IndexIntegrityError(f"{path}: manifest says version {self.manifest.version}, folder is {number}")
        if verify:
            verify_files(path, self.manifest)
        try:
            self.image_index = read_faiss(path / IMAGES_INDEX, self.manifest.index.get("kind", "flat"), mmap)
            self.caption_index = read_faiss(path / CAPTIONS_INDEX, "flat", mmap)
            if self.manifest.format == PREVIOUS_FORMAT:
                vectors = VectorFile.from_index(*stored_vectors(self.image_index))
            else:
                vectors = VectorFile.open(path / IMAGE_IDS, path / IMAGE_VECTORS)
        except (RuntimeError, OSError, ValueError) as exc:
            raise IndexIntegrityError(f"{path}: unreadable FAISS index or vector file: {exc}") from exc
        set_search_parameter(self.image_index, self.manifest.index)
        self._images = ImageSearch(self.image_index, vectors, self.manifest.index)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(f"file:{path / META}?mode=ro&immutable=1", uri=True, check_same_thread=False)
        try:
            self.has_time_sources = has_column(self._db, "images", "time_source")
            self.has_stac = has_stac(self._db)
            recorded = ", time_source" if self.has_time_sources else ", NULL"  # NULL: written before it existed
            self._image_columns, self._scene_columns = IMAGE_COLUMNS + recorded, SCENE_COLUMNS + recorded
            self._load_profiles(path / PROFILES)
            self._check_counts()
        except (IndexIntegrityError, sqlite3.Error) as exc:
            self._db.close()
            if isinstance(exc, sqlite3.Error):
                raise IndexIntegrityError(f"{path}: unreadable metadata: {exc}") from exc
            raise

    def _load_profiles(self, path: Path) -> None:
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {key: data[key] for key in ("image_ids", "image_profiles", "caption_ids", "caption_profiles")}
        except (OSError, KeyError, ValueError) as exc:
            raise IndexIntegrityError(f"{path}: unreadable profiles: {exc}") from exc
        self._image_profiles = arrays["image_profiles"]
        self._caption_profiles = arrays["caption_profiles"]
        self._image_rows = {int(i): row for row, i in enumerate(arrays["image_ids"])}
        self._caption_rows = {int(i): row for row, i in enumerate(arrays["caption_ids"])}

    def _check_counts(self) -> None:
        counts = self.manifest.counts
        with self._lock:
            n_images = self._db.execute("SELECT count(*) FROM images").fetchone()[0]
            n_captions = self._db.execute("SELECT count(*) FROM captions").fetchone()[0]
        found = {
            "image vectors": (self.image_index.ntotal, counts["images"]),
            "stored image vectors": (len(self._images.vectors), counts["images"]),
            "image rows": (n_images, counts["images"]),
            "image profiles": (len(self._image_rows), counts["images"]),
            "caption vectors": (self.caption_index.ntotal, counts["captions"]),
            "caption rows": (n_captions, counts["captions"]),
            "caption profiles": (len(self._caption_rows), counts["captions"]),
        }
        for what, (got, want) in found.items():
            if got != want:
                raise IndexIntegrityError(f"{self.path}: {got} {what}, manifest counts {want}")
        for name, index in (("image", self.image_index), ("caption", self.caption_index)):
            if index.d != self.manifest.dim:
                raise IndexIntegrityError(f"{self.path}: {name} index has dim {index.d}, manifest {self.manifest.dim}")

    def to_gpu(self) -> None:
        if faiss.get_num_gpus() > 0:
            resources = faiss.StandardGpuResources()
            # FAISS has no GPU HNSW; sq8's short list (up to 32 x K') can pass the GPU's k limit of 2,048, and
            # ivf-pq on a GPU is untried here: those stay on the CPU, their codes memory-mapped
            if self.manifest.index.get("kind", "flat") not in ("hnsw", "sq8", "ivf-pq"):
                self.image_index = faiss.index_cpu_to_gpu(resources, 0, self.image_index)
                self._images.index = self.image_index  # filtered search keeps the CPU copy
            self.caption_index = faiss.index_cpu_to_gpu(resources, 0, self.caption_index)
            self._gpu_resources = resources

    def _queries(self, queries: np.ndarray, k: int) -> np.ndarray:
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.manifest.dim:
            raise ValueError(f"queries must be (Q, {self.manifest.dim}), got {queries.shape}")
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        return queries

    def search_images(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return self._images.search(self._queries(queries, k), k)

    def search_captions(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return self.caption_index.search(self._queries(queries, k), k)

    def search_images_in(
        self, queries: np.ndarray, k: int, ids: np.ndarray, method: str = "auto"
    ) -> tuple[np.ndarray, np.ndarray]:
        """The top k of `ids` only (every one of them is a candidate), as `search_images` returns them.
        `method` "exact" or "selector" forces one strategy (for measuring the crossover)."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.manifest.dim:
            raise ValueError(f"queries must be (Q, {self.manifest.dim}), got {queries.shape}")
        return self._images.search_in(queries, k, ids, method)

    def image_vectors(self, ids: list[int] | np.ndarray) -> np.ndarray:
        return self._images.vectors.get(np.asarray(ids, dtype=np.int64).reshape(-1))

    def all_image_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids ascending, their vectors): read-only views of the memory-mapped vector file, no copy."""
        return self._images.vectors.ids, self._images.vectors.vectors

    def image_path(self, image_id: int) -> Path:
        record = self.image(image_id)
        return Path(self.manifest.sources[record.source]) / record.path

    def image_ids(self) -> np.ndarray:
        return np.fromiter(self._image_rows.keys(), dtype=np.int64, count=len(self._image_rows))

    def caption_ids(self) -> np.ndarray:
        return np.fromiter(self._caption_rows.keys(), dtype=np.int64, count=len(self._caption_rows))

    def image_profiles(self, ids: list[int] | np.ndarray) -> np.ndarray:
        return self._image_profiles[[self._image_rows[int(i)] for i in ids]]

    def caption_profiles(self, ids: list[int] | np.ndarray) -> np.ndarray:
        return self._caption_profiles[[self._caption_rows[int(i)] for i in ids]]

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> IndexVersion:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class IndexStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def version_path(self, number: int) -> Path:
        return self.root / VERSIONS / str(number)

    def current_version(self) -> int | None:
        path = self.root / CURRENT
        try:
            text = path.read_text().strip()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise IndexIntegrityError(f"{path} is unreadable: {exc}") from exc
        if not text.isdigit():
            raise IndexIntegrityError(f"{path} does not hold a version number: {text[:40]!r}")
        return int(text)

    def versions(self) -> list[int]:
        base = self.root / VERSIONS
        if not base.is_dir():
            return []
        return sorted(int(p.name) for p in base.iterdir() if p.name.isdigit() and (p / MANIFEST).is_file())

    def open(self, number: int | None = None, verify: bool = True) -> IndexVersion:
        if number is None:
            number = self.current_version()
            if number is None:
                raise IndexIntegrityError(f"{self.root} has no published index version ({CURRENT} is missing)")
        path = self.version_path(number)
        if not path.is_dir():
            raise IndexIntegrityError(f"{self.root}: version {number} does not exist")
        return IndexVersion(number, path, verify=verify)


def open_version(root: str | Path, number: int | None = None, verify: bool = True) -> IndexVersion:
    return IndexStore(root).open(number, verify=verify)
