"""The FastAPI application: `create_app(settings)` for code and tests, `app_from_env()` for uvicorn.

uvicorn --factory service.app:app_from_env      (settings from POSAPL_* / .env)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import torch
from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles

from posapl.checkpoint import load_model
from posapl.model import POSAPL
from service.errors import install_error_handlers
from service.head import HeadAsGet
from service.json_body import JsonBodyLimit
from service.links import PublicBase
from service.metrics import RequestMetrics, ServiceMetrics
from service.page import STATIC
from service.page import router as page_router
from service.routers import admin, detect, feedback, health, images, saved, scenes, search
from service.saved.access import key_if_required
from service.security_headers import SecurityHeaders
from service.settings import ServiceSettings
from service.stac import router as stac_router
from service.state import ServiceState
from service.workers import default_workers, share_cores

CORS_METHODS = ["GET", "POST", "PATCH", "DELETE"]  # HEAD is a simple method: it needs no preflight
UPLOAD_PATHS = frozenset({"/v1/search/image"})  # multipart uploads enforce their own, larger limit
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str) -> None:
    """Give the service's loggers a handler at the configured level.

    uvicorn configures only its own loggers; without this, INFO lines such as index swaps go to Python's
    last-resort handler, which drops everything below WARNING. One handler per process, however many apps.
    """
    logger = logging.getLogger("service")
    logger.setLevel(level)
    if not any(getattr(handler, "posapl", False) for handler in logger.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        handler.posapl = True  # type: ignore[attr-defined]
        logger.addHandler(handler)


def resolve_device(name: str) -> torch.device:
    """`auto` means the GPU when there is one, so one configuration serves CPU and GPU machines."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def load_serving_model(settings: ServiceSettings) -> POSAPL:
    """The model named by the settings, on the configured device (raises WeightsUnavailableError offline)."""
    model = load_model(settings.checkpoint, settings.pretrained, settings.preset, settings.arch)
    return model.to(resolve_device(settings.device)).eval()


def create_app(settings: ServiceSettings, model: POSAPL | None = None) -> FastAPI:
    """Build the application; pass `model` to reuse one already loaded (the CLI loads it to build the index)."""
    configure_logging(settings.log_level)
    metrics = ServiceMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        serving = model if model is not None else await asyncio.to_thread(load_serving_model, settings)
        state = await asyncio.to_thread(ServiceState.build, settings, serving, metrics)
        await state.start()
        app.state.service = state
        try:
            yield
        finally:
            await state.stop()

    app = FastAPI(
        title="POSAPL remote-sensing search",
        version="1.0.0",
        summary="Text-to-image and image-to-caption retrieval over a remote-sensing archive",
        lifespan=lifespan,
    )
    install_error_handlers(app, hidden=(settings.index_root, settings.index_root.resolve()))
    app.add_middleware(JsonBodyLimit, max_bytes=settings.max_json_bytes, exempt_paths=UPLOAD_PATHS)
    app.add_middleware(RequestMetrics, metrics=metrics)
    app.add_middleware(PublicBase, public_url=settings.public_url)
    if settings.cors_origins:
        # PATCH and DELETE for saved searches; the key headers (Authorization, X-API-Key) are echoed by "*".
        app.add_middleware(
            CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=CORS_METHODS, allow_headers=["*"]
        )
    app.add_middleware(HeadAsGet)  # outermost: everything inside sees the GET it stands for
    for module in (search, feedback, detect):
        app.include_router(module.router, dependencies=[Depends(key_if_required)])
    for module in (saved, images, scenes, health, admin):
        app.include_router(module.router)
    app.include_router(page_router)
    app.include_router(stac_router, dependencies=[Depends(key_if_required)])
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.state.page_tiles = settings.map_tiles
    app.add_middleware(SecurityHeaders, tiles=settings.map_tiles)  # last added: outermost, so on every response
    return app


def app_from_env() -> FastAPI:
    """uvicorn factory: settings from the environment and `.env`; with several workers (WEB_CONCURRENCY) each
    takes its share of the cores for its encoder threads."""
    return create_app(share_cores(ServiceSettings(), default_workers()))
