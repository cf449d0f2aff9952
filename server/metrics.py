"""Prometheus metrics, one registry per app so several apps (tests) can live in one process.

`MetricsMiddleware` is plain ASGI rather than `BaseHTTPMiddleware`: the latter wraps `receive`,
which would break the disconnect detection and body-size accounting that handlers rely on.
"""

from __future__ import annotations

import time

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)


def peak_rss_bytes() -> float:
    """This process's peak resident set size (VmHWM), 0 where /proc is unavailable."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    return 0.0


class Metrics:
    """All the service's instruments, registered on a private registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)
        self.requests = Counter(
            "wavtok_requests_total", "HTTP requests", ["route", "method", "status"], registry=r
        )
        self.latency = Histogram(
            "wavtok_request_duration_seconds",
            "HTTP request latency, until the response body ended",
            ["route", "method", "status"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.audio_seconds = Counter(
            "wavtok_audio_seconds_total",
            "Seconds of audio processed",
            ["model", "op", "transport"],
            registry=r,
        )
        self.batch_size = Histogram(
            "wavtok_batch_size",
            "Items per model batch",
            ["model", "op"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.batch_seconds = Histogram(
            "wavtok_batch_duration_seconds",
            "Model time per batch",
            ["model", "op"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "wavtok_queue_depth", "Requests waiting for a batch", ["model", "op"], registry=r
        )
        self.rejected = Counter(
            "wavtok_rejected_total", "Requests refused as overload", ["reason"], registry=r
        )
        self.active_streams = Gauge(
            "wavtok_active_streams", "Open WebSocket streams", ["op"], registry=r
        )
        self.streams = Counter(
            "wavtok_streams_total", "WebSocket streams by outcome", ["op", "outcome"], registry=r
        )
        self.peak_rss = Gauge("wavtok_peak_rss_bytes", "Peak resident set size", registry=r)
        self.peak_rss.set_function(peak_rss_bytes)
        self.ready = Gauge("wavtok_ready", "1 once models are loaded and warm", registry=r)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def _route_label(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    # Unmatched paths are folded into one label so scanners cannot blow up the cardinality.
    return path if isinstance(path, str) else "unmatched"


class MetricsMiddleware:
    """Counts HTTP requests and their latency by route template, method and status."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            labels = (_route_label(scope), scope.get("method", ""), str(status))
            self.metrics.requests.labels(*labels).inc()
            self.metrics.latency.labels(*labels).observe(time.perf_counter() - start)
