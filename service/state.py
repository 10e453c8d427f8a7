"""Everything one running application holds, built once at startup and reached through dependencies."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import threading
from dataclasses import dataclass, field

import torch
from fastapi import Request

from index.store import IndexStore
from posapl.model import POSAPL
from posapl.pos import PosTagger
from service.cache import LRUCache
from service.encoding import QueryEncoder
from service.imaging import Rendered
from service.live import LiveIndex
from service.metrics import ServiceMetrics
from service.search import Searcher
from service.settings import ServiceSettings

log = logging.getLogger(__name__)


@dataclass
class ServiceState:
    settings: ServiceSettings
    model: POSAPL
    live: LiveIndex
    searcher: Searcher
    metrics: ServiceMetrics
    thumbnails: LRUCache[int, Rendered]
    background: list[asyncio.Task[None]] = field(default_factory=list)
    worker: str = field(default_factory=lambda: secrets.token_hex(4))  # tells worker processes apart in /readyz

    @classmethod
    def build(cls, settings: ServiceSettings, model: POSAPL, metrics: ServiceMetrics) -> ServiceState:
        if settings.torch_threads is not None:
            torch.set_num_threads(settings.torch_threads)
        encoder = QueryEncoder(model, PosTagger(), settings.cache_size)
        live = LiveIndex(
            IndexStore(settings.index_root), model.fingerprint(), metrics, use_gpu=model.device.type == "cuda"
        )
        return cls(
            settings=settings,
            model=model,
            live=live,
            searcher=Searcher(settings, encoder, live, metrics),
            metrics=metrics,
            thumbnails=LRUCache(settings.thumbnail_cache_size),
        )

    async def start(self) -> None:
        await self.searcher.start()
        self._prepare_runtime()
        outcome = await self.live.reload()
        log.info("index at startup: %s", outcome.message)
        self.background.append(asyncio.create_task(self.live.poll_forever(self.settings.reload_poll_s)))

    def _prepare_runtime(self) -> None:
        """Export or load the ONNX graphs without holding up readiness: PyTorch answers until they are ready.

        A daemon thread, not the event loop's executor, so a shutdown during a first export does not wait
        for it (the graph is written atomically, so an interrupted export leaves nothing half-written).
        """
        settings = self.settings
        encoder = self.searcher.encoder
        encoder.announce(settings.encoder_runtime)
        threading.Thread(
            target=encoder.prepare_runtime,
            args=(settings.encoder_runtime, settings.onnx_cache_dir, settings.onnx_threads,
                  settings.onnx_text_precision, settings.onnx_image_precision),
            name="encoder-runtime",
            daemon=True,
        ).start()

    async def stop(self) -> None:
        for task in self.background:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.searcher.stop()


async def get_state(request: Request) -> ServiceState:
    """FastAPI dependency: the application's state (set by the lifespan).

    `async` because FastAPI runs a plain `def` dependency in its thread pool: a thread hop on every request
    for one attribute read (the serving profile of 2026-12-05 in benchmarks/RESULTS.md)."""
    return request.app.state.service
