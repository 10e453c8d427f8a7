"""Prometheus metrics of one application instance.

Each app gets its own registry so several apps in one process (tests, benchmarks) never collide on metric
names. Route labels use the route template (`/v1/images/{image_id}`), never the raw path, so label
cardinality stays bounded whatever clients send.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from fastapi import Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class ServiceMetrics:
    """The service's counters, histograms and gauges, and the middleware that feeds the request metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "posapl_http_requests", "HTTP requests served", ["route", "method", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "posapl_http_request_duration_seconds",
            "HTTP request latency",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.stage = Histogram(
            "posapl_stage_duration_seconds",
            "time per pipeline stage (pos, encode, search, rerank, decode)",
            ["pipeline", "stage"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "posapl_batch_size", "items per micro-batch", ["batcher"], buckets=BATCH_BUCKETS, registry=self.registry
        )
        self.cache = Counter("posapl_query_cache", "query embedding cache lookups", ["result"], registry=self.registry)
        self.index_version = Gauge(
            "posapl_index_version", "live index version (-1 when none is loaded)", registry=self.registry
        )
        self.reloads = Counter("posapl_index_reloads", "index reload attempts", ["outcome"], registry=self.registry)
        self.index_version.set(-1)

    def observe_stages(self, pipeline: str, timings_ms: dict[str, float]) -> None:
        for stage, ms in timings_ms.items():
            if stage != "total":
                self.stage.labels(pipeline, stage).observe(ms / 1000.0)

    def render(self) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)



class RequestMetrics:
    """ASGI middleware: count each HTTP request and time it until its last byte is handed to the server.

    A plain ASGI middleware rather than `@app.middleware("http")`: Starlette's BaseHTTPMiddleware runs the
    rest of the application in a second task and streams the response through a memory channel, which cost
    every request extra event-loop rounds (benchmarks/RESULTS.md, serving profile of 2026-12-05).
    """

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # unless the application starts a response, the server answers 500
        recorded = False

        def record() -> None:
            nonlocal recorded
            recorded = True
            request = Request(scope)
            template = route_template(request)
            self.metrics.latency.labels(template, request.method).observe(time.perf_counter() - started)
            self.metrics.requests.labels(template, request.method, str(status)).inc()

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                record()  # before the last byte leaves: a client's next request already sees this one counted
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            if not recorded:
                record()


def route_template(request: Request) -> str:
    """The label of the route that served (or would serve) the request.

    FastAPI's API routes record themselves in the scope; the documentation pages (`/docs`, `/openapi.json`,
    `/redoc`) and mounts are plain Starlette routes that do not, and a request refused by a middleware (e.g.
    a 413) never reached the router, so those are matched here against the application's routes.
    """
    route = request.scope.get("route")
    if route is not None and getattr(route, "path", None):
        return route.path
    # a mount (/static) has moved its prefix into root_path by now: match the path as the client sent it
    scope = {**request.scope, "root_path": request.scope.get("app_root_path", request.scope.get("root_path", ""))}
    return _matching_template(getattr(request.app, "routes", ()), scope) or "unmatched"


def _matching_template(routes: Iterable[BaseRoute], scope: Scope) -> str | None:
    for candidate in routes:
        if candidate.matches(scope)[0] != Match.FULL:
            continue
        path = getattr(candidate, "path", None)
        if path:
            return path
        # an included router (FastAPI >= 0.165 keeps them as one entry): look among its own routes
        inner = getattr(getattr(candidate, "original_router", candidate), "routes", ())
        return _matching_template(inner, scope) if inner is not routes else None
    return None
