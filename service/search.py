"""The two retrieval pipelines (text → images, image → captions + images), each timed per stage.

FAISS job batching lives in `service.search_jobs`, hit assembly in `service.hits`.

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
from dataclasses import dataclass

import faiss
import numpy as np
from PIL import Image

from index.store import ImageRecord, IndexVersion
from posapl.text import normalize_caption
from service.batching import MicroBatcher
from service.encoding import EncodedQuery, QueryEncoder
from service.errors import ServiceError
from service.filters import matching_ids
from service.hits import caption_hits, image_hits, rerank_note
from service.live import LiveIndex
from service.metrics import ServiceMetrics
from service.overlaps import keep_distinct
from service.query_text import clean_query
from service.ranking import rerank
from service.schemas import CaptionHit, ImageHit, RerankMethod, SearchFilters
from service.search_jobs import BLAS_MIN_BATCH, Candidates, SearchJob, run_searches, use_blas_from
from service.settings import ServiceSettings

__all__ = [  # other modules import these from here
    "BLAS_MIN_BATCH", "SearchJob", "Searcher", "image_hits", "matching_ids", "run_searches", "use_blas_from",
]


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
