"""Prometheus metrics, in a registry per app (several apps can live in one test process)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


@dataclass
class Metrics:
    registry: CollectorRegistry
    requests: Counter
    latency: Histogram
    uploads: Counter
    refusals: Counter
    jobs: Counter
    job_seconds: Histogram
    queue_depth: Gauge

    def render(self) -> bytes:
        return generate_latest(self.registry)


def make_metrics(queue_depth: Callable[[], float] | None = None) -> Metrics:
    reg = CollectorRegistry(auto_describe=True)
    metrics = Metrics(
        registry=reg,
        requests=Counter(
            "medlens_http_requests", "HTTP requests", ["method", "route", "status"], registry=reg
        ),
        latency=Histogram("medlens_http_request_seconds", "HTTP latency", ["route"], registry=reg),
        uploads=Counter("medlens_uploads", "Studies uploaded", ["outcome"], registry=reg),
        refusals=Counter(
            "medlens_refusals", "Requests refused, by error code", ["code"], registry=reg
        ),
        jobs=Counter("medlens_jobs_finished", "Jobs finished", ["kind", "status"], registry=reg),
        job_seconds=Histogram(
            "medlens_job_seconds",
            "Job run time",
            ["kind"],
            registry=reg,
            buckets=(0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600),
        ),
        queue_depth=Gauge("medlens_jobs_queued", "Jobs waiting", registry=reg),
    )
    if queue_depth is not None:
        metrics.queue_depth.set_function(queue_depth)
    return metrics


class MetricsMiddleware:
    """Counts requests by route template (not raw path: ids would explode label sets)."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def tracking_send(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.requests.labels(scope["method"], route, str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - start)
