"""The two retrieval pipelines (text → images, image → captions + images), each timed per stage.

Text: normalise → (cache | micro-batched POS tagging + encoding) → [filters: SQL and the footprint R*Tree
select every matching id] → FAISS search of the K' best (unfiltered queries are micro-batched into one FAISS
call; a filtered query ranks only its matching ids, as its own job) → online re-rank → overlapping tiles of one
scene suppressed (more candidates ranked when that leaves fewer than k) → top k. A batched stage
reports the run time of the batch the request rode in; time spent queueing for a batch shows in `total` but
in no stage. Filter selection counts as search time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import Literal

import faiss
import numpy as np
from PIL import Image

from index.store import ImageRecord, IndexVersion
from posapl.text import normalize_caption
from service.batching import MicroBatcher
from service.encoding import EncodedQuery, QueryEncoder
from service.errors import ServiceError
from service.filters import matching_ids
from service.geo.winding import rfc7946_geometry
from service.links import archive_path, image_links, scene_links
from service.live import LiveIndex
from service.metrics import ServiceMetrics
from service.overlaps import keep_distinct
from service.query_text import clean_query
from service.ranking import rerank
from service.schemas import CaptionHit, ImageHit, RerankMethod, SceneRef, SearchFilters, WindowRef
from service.settings import ServiceSettings
from service.stac_ref import stac_ref

Target = Literal["images", "captions"]
# Exact FAISS search scans every vector per query unless a batch goes through BLAS (one pass over the
# vectors for all queries). On the 2-core CPU with 100k x 512 vectors BLAS costs about 4 single scans whatever
# the batch size up to 8 (single scan 7-9 ms, BLAS 29-41 ms, one thread, quiet machine), so batches of 4+ take it.
BLAS_MIN_BATCH = 4


@dataclass(frozen=True)
class SearchJob:
    version: IndexVersion
    target: Target
    vector: np.ndarray
    k: int
    among: np.ndarray | None = None  # image ids a filter selected: rank only these


@dataclass(frozen=True)
class TextOutcome:
    normalized: str
    pos: list[str]
    hits: list[ImageHit]
    rerank: RerankMethod
    version: int
    timings_ms: dict[str, float]
    matched: int | None = None
    rerank_note: str | None = None
    dedupe_note: str | None = None


@dataclass(frozen=True)
class ImageOutcome:
    captions: list[CaptionHit]
    images: list[ImageHit]
    rerank: RerankMethod
    version: int
    timings_ms: dict[str, float]
    rerank_note: str | None = None
    dedupe_note: str | None = None


@dataclass(frozen=True)
class RankedImages:
    ids: np.ndarray
    scores: np.ndarray
    records: list[ImageRecord | None]
    applied: RerankMethod
    candidates: int  # how many were ranked before suppression
    search_ms: float
    rerank_ms: float
    dedupe_note: str | None = None  # why fewer than k came back although more images were eligible


@dataclass(frozen=True)
class Candidates:
    ids: np.ndarray
    scores: np.ndarray


def use_blas_from(queries: int, dim: int) -> None:
    """Exact searches of at least `queries` vectors of `dim` go through BLAS, smaller ones scan.

    The faiss-gpu 1.15 wheel compares queries x dimension, not the number of queries, with its threshold
    (tests/test_search_paths.py shows which path answers): a threshold of 4 sent every single query through
    BLAS, 4x slower than the scan (31 ms instead of 7.5 at 100k x 512), for all of the service's history.
    """
    faiss.cvar.distance_compute_blas_threshold = queries * dim


def run_searches(jobs: list[SearchJob]) -> list[Candidates]:
    """One FAISS call per (version, target) group of unfiltered jobs: a batch of queries costs far less than one
    call each. A filtered job ranks its own id set, so it runs alone."""
    results: list[Candidates | None] = [None] * len(jobs)
    groups: dict[tuple[int, Target], list[int]] = {}
    for i, job in enumerate(jobs):
        if job.among is not None:
            scores, ids = job.version.search_images_in(job.vector[None, :], job.k, job.among)
            keep = ids[0] >= 0
            results[i] = Candidates(ids[0][keep], scores[0][keep])
            continue
        groups.setdefault((id(job.version), job.target), []).append(i)
    for members in groups.values():
        first = jobs[members[0]]
        total = first.version.manifest.counts["images" if first.target == "images" else "captions"]
        k = max(1, min(max(jobs[i].k for i in members), total))
        queries = np.stack([jobs[i].vector for i in members])
        search = first.version.search_images if first.target == "images" else first.version.search_captions
        scores, ids = search(queries, k)
        for row, i in enumerate(members):
            keep = ids[row, : jobs[i].k] >= 0
            results[i] = Candidates(ids[row, : jobs[i].k][keep], scores[row, : jobs[i].k][keep])
    return [r for r in results if r is not None]


class Searcher:
    """Owns the batchers and runs the pipelines against the live index."""

    def __init__(
        self, settings: ServiceSettings, encoder: QueryEncoder, live: LiveIndex, metrics: ServiceMetrics
    ) -> None:
        self.settings = settings
        self.encoder = encoder
        self.live = live
        self._active = 0  # requests between entering a pipeline and getting their answer
        use_blas_from(BLAS_MIN_BATCH, encoder.model.embed_dim)
        self.metrics = metrics
        self.text_batcher: MicroBatcher[str, EncodedQuery] = MicroBatcher(
            encoder.encode_batch,
            settings.batch_max_size,
            settings.batch_wait_ms,
            "text",
            on_batch=lambda n, _: metrics.batch_size.labels("text").observe(n),
            expect_more=self._others_in_flight,
        )
        self.search_batcher: MicroBatcher[SearchJob, Candidates] = MicroBatcher(
            run_searches,
            settings.batch_max_size,
            settings.batch_wait_ms,
            "search",
            on_batch=lambda n, _: metrics.batch_size.labels("search").observe(n),
            expect_more=self._others_in_flight,
            # OpenMP's thread count is per calling thread: set it in the thread that runs the searches.
            thread_init=lambda: faiss.omp_set_num_threads(settings.faiss_threads),
        )
        self.image_batcher: MicroBatcher[Image.Image, np.ndarray] = MicroBatcher(
            encoder.encode_images,
            max(1, settings.batch_max_size // 4),
            settings.batch_wait_ms,
            "image",
            on_batch=lambda n, _: metrics.batch_size.labels("image").observe(n),
            expect_more=self._others_in_flight,
        )

    def _others_in_flight(self, batch_size: int) -> bool:
        """More requests are under way than this batch holds, so waiting a moment may fill it further."""
        return self._active > batch_size

    async def start(self) -> None:
        for batcher in (self.text_batcher, self.search_batcher, self.image_batcher):
            await batcher.start()

    async def stop(self) -> None:
        for batcher in (self.text_batcher, self.search_batcher, self.image_batcher):
            await batcher.stop()

    def normalize(self, query: str) -> str:
        """The caption the model sees: the cleaned query (`clean_query`), normalised as training captions are."""
        try:
            return normalize_caption(clean_query(query, self.settings.max_query_chars))
        except ValueError:
            raise ServiceError(
                422, "empty_query", "query is empty once whitespace, invisible characters and punctuation are removed"
            ) from None

    async def embed(self, caption: str) -> tuple[list[str], np.ndarray, float, float]:
        """POS words, vector, pos ms, encode ms (zeros on a cache hit)."""
        cached = self.encoder.cache.get(caption)
        if cached is not None:
            self.metrics.cache.labels("hit").inc()
            return cached.pos, cached.vector, 0.0, 0.0
        self.metrics.cache.labels("miss").inc()
        outcome = await self.text_batcher.submit(caption)
        encoded = outcome.value
        return encoded.embedding.pos, encoded.embedding.vector, encoded.pos_ms, encoded.encode_ms

    async def text(
        self,
        query: str,
        k: int,
        method: RerankMethod,
        filters: SearchFilters | None,
        dedupe: bool = True,
        only: np.ndarray | None = None,
    ) -> TextOutcome:
        """`only`: image ids the answer must come from as well (the STAC API's `ids` and `collections`)."""
        self._active += 1
        try:
            return await self._text(query, k, method, filters, dedupe, only)
        finally:
            self._active -= 1

    async def image(
        self,
        image: Image.Image,
        k_captions: int,
        k_images: int,
        method: RerankMethod,
        decode_ms: float,
        dedupe: bool = True,
    ) -> ImageOutcome:
        self._active += 1
        try:
            return await self._image(image, k_captions, k_images, method, decode_ms, dedupe)
        finally:
            self._active -= 1

    async def _text(
        self,
        query: str,
        k: int,
        method: RerankMethod,
        filters: SearchFilters | None,
        dedupe: bool,
        only: np.ndarray | None,
    ) -> TextOutcome:
        started = time.perf_counter()
        caption = self.normalize(query)
        pos, vector, pos_ms, encode_ms = await self.embed(caption)
        version = self.live.snapshot()
        searched = time.perf_counter()
        among = None
        if filters is not None and filters.model_fields_set:
            among = await asyncio.to_thread(matching_ids, version, filters)
        if only is not None:
            among = only if among is None else np.intersect1d(among, only)
        select_ms = (time.perf_counter() - searched) * 1000.0
        k_prime = max(k, self.settings.rerank_candidates) if method != "none" else k
        ranked = await self.rank_images(version, vector, k, k_prime, method, among, dedupe)
        hits = image_hits(version, ranked.ids, ranked.scores, ranked.records)
        timings = {
            "pos": pos_ms,
            "encode": encode_ms,
            "search": select_ms + ranked.search_ms,
            "rerank": ranked.rerank_ms,
            "total": (time.perf_counter() - started) * 1000.0,
        }
        self.metrics.observe_stages("text", timings)
        empty_reason = "no image matched the filters" if among is not None else ""
        note = rerank_note(method, ranked.applied, ranked.candidates, empty_reason)
        matched = None if among is None else len(among)
        return TextOutcome(
            caption, pos, hits, ranked.applied, version.number, timings, matched, note, ranked.dedupe_note
        )

    async def rank_images(
        self,
        version: IndexVersion,
        vector: np.ndarray,
        k: int,
        k_prime: int,
        method: RerankMethod,
        among: np.ndarray | None,
        dedupe: bool,
    ) -> RankedImages:
        """The k best images (among `among` when a filter selected them), re-ranked, with overlapping tiles of
        one scene suppressed. The first round ranks exactly K' (the re-ranking's candidate list); suppression can
        leave fewer than k, so the list then grows (x4 each round) until k remain, every eligible image has been
        ranked, or the list reaches the `dedupe_max_candidates` setting (then the answer says so)."""
        available = len(among) if among is not None else version.manifest.counts["images"]
        fetch = min(k_prime, max(available, 1))
        ceiling = min(max(k_prime, self.settings.dedupe_max_candidates), available)
        search_ms = rerank_ms = 0.0
        while True:
            searched = time.perf_counter()
            if available == 0:
                candidates = Candidates(np.zeros(0, np.int64), np.zeros(0, np.float32))
            else:
                job = SearchJob(version, "images", vector, fetch, among)
                candidates = (await self.search_batcher.submit(job)).value
            search_ms += (time.perf_counter() - searched) * 1000.0
            started = time.perf_counter()
            ids, scores = candidates.ids, candidates.scores
            applied: RerankMethod = "none"
            if method != "none" and len(ids):
                ids, scores, _, applied = rerank(
                    method, ids, scores, version.image_profiles(ids), self.settings.reciprocal_k,
                    self.settings.reciprocal_alpha,
                )
            records = version.images(ids) if dedupe else version.images(ids[:k])
            keep = keep_distinct(records, k) if dedupe else list(range(min(k, len(ids))))
            rerank_ms += (time.perf_counter() - started) * 1000.0
            if len(keep) >= k or fetch >= ceiling or len(candidates.ids) < fetch:
                break
            fetch = min(fetch * 4, ceiling)
        note = None
        if len(keep) < k and fetch < available and len(candidates.ids) >= fetch:
            note = (
                f"overlap suppression kept {len(keep)} of the {fetch} best images (the rest overlap better tiles of "
                f"their scenes) and ranks no further; send dedupe_overlaps=false to see them"
            )
        return RankedImages(
            ids[keep], scores[keep], [records[i] for i in keep], applied, len(candidates.ids), search_ms, rerank_ms,
            note,
        )

    async def _image(
        self, image: Image.Image, k_captions: int, k_images: int, method: RerankMethod, decode_ms: float, dedupe: bool
    ) -> ImageOutcome:
        started = time.perf_counter()
        vector = (await self.image_batcher.submit(image)).value
        encode_ms = (time.perf_counter() - started) * 1000.0
        version = self.live.snapshot()
        searched = time.perf_counter()
        k_prime = max(3 * k_captions, self.settings.rerank_candidates if method != "none" else 0)
        captions_job = self.search_batcher.submit(SearchJob(version, "captions", vector, k_prime))
        if k_images:
            found, similar = await asyncio.gather(
                captions_job, self.rank_images(version, vector, k_images, k_images, "none", None, dedupe)
            )
            images = image_hits(version, similar.ids, similar.scores, similar.records)
            dedupe_note = similar.dedupe_note
        else:
            found, images, dedupe_note = await captions_job, [], None
        search_ms = (time.perf_counter() - searched) * 1000.0
        ranked = time.perf_counter()
        caption_ids, caption_scores = found.value.ids, found.value.scores
        applied: RerankMethod = "none"
        if method != "none" and len(caption_ids):
            caption_ids, caption_scores, _, applied = rerank(
                method, caption_ids, caption_scores, version.caption_profiles(caption_ids),
                self.settings.reciprocal_k, self.settings.reciprocal_alpha,
            )
        rerank_ms = (time.perf_counter() - ranked) * 1000.0
        captions = caption_hits(version, caption_ids, caption_scores, k_captions)
        timings = {
            "decode": decode_ms,
            "encode": encode_ms,
            "search": search_ms,
            "rerank": rerank_ms,
            "total": decode_ms + (time.perf_counter() - started) * 1000.0,
        }
        self.metrics.observe_stages("image", timings)
        note = rerank_note(method, applied, len(caption_ids), "the caption bank is empty")
        return ImageOutcome(captions, images, applied, version.number, timings, note, dedupe_note)


def rerank_note(method: RerankMethod, applied: RerankMethod, candidates: int, empty_reason: str) -> str | None:
    """Why a requested re-ranking was not applied (None when it was, or none was asked for)."""
    if method == "none" or applied != "none":
        return None
    if candidates == 0:
        return f"no candidates to re-rank ({empty_reason})" if empty_reason else "no candidates to re-rank"
    return "no caption bank: the index holds no re-ranking profiles, so results keep their similarity order"


def _window(record: ImageRecord) -> WindowRef:
    x, y, width, height = record.window or (0, 0, record.width, record.height)
    return WindowRef(x=x, y=y, width=width, height=height, size=record.window_size)


def image_hits(
    version: IndexVersion,
    ids: np.ndarray,
    scores: np.ndarray,
    records: Sequence[ImageRecord | None] | None = None,
) -> list[ImageHit]:
    if records is None:
        records = version.images(ids)
    stac = version.stac({record.scene_id for record in records if record is not None})
    hits = []
    for image_id, score, record in zip(ids, scores, records, strict=True):
        if record is None:
            continue
        path = archive_path(version.manifest.sources, record.source, record.path)
        scene = scene_links(record.scene_id)
        hits.append(
            ImageHit(
                id=int(image_id),
                score=float(score),
                path=path,
                width=record.width,
                height=record.height,
                **image_links(int(image_id)),
                bbox=list(record.bbox) if record.bbox is not None else None,
                crs=record.crs,
                scene=SceneRef(id=record.scene_id, path=path, url=scene["url"]),
                scene_url=scene["image_url"] if record.window is not None else None,
                window=_window(record),
                footprint=rfc7946_geometry(record.footprint),
                gsd=record.gsd,
                time=record.time,
                time_source=record.time_source,
                stac=stac_ref(stac.get(record.scene_id)),
            )
        )
    return hits


def caption_hits(version: IndexVersion, ids: np.ndarray, scores: np.ndarray, limit: int) -> list[CaptionHit]:
    """The best `limit` distinct caption texts (caption banks repeat captions verbatim), best first.

    `source` is the caption file's name only: the server's directory layout is none of the client's business.
    """
    hits: list[CaptionHit] = []
    seen: set[str] = set()
    for start in range(0, len(ids), max(limit * 3, 1)):
        chunk = slice(start, start + max(limit * 3, 1))
        for score, record in zip(scores[chunk], version.captions(ids[chunk]), strict=True):
            if record is None or record.text in seen:
                continue
            seen.add(record.text)
            hits.append(CaptionHit(text=record.text, score=float(score), source=PurePath(record.source).name))
            if len(hits) == limit:
                return hits
    return hits
