"""Prometheus metrics: per-route latency and request counts (observed by service.edge), encoder
and search batch sizes, encoder times, queue depth and index size. One registry per app, so
several apps (tests) can live in one process.

The HTTP metrics keep the names and labels prometheus-fastapi-instrumentator gave them
(`http_request_duration_seconds` and `http_requests_total`, by handler, method and status),
so dashboards carry over; the instrumentator itself is gone: it matched every route's regex
again on each request to name the handler, which the router has already done.

Several server processes (`xmr serve --workers N`) write their counts to files in
PROMETHEUS_MULTIPROC_DIR, which prometheus_client reads when that variable is set before it is
imported; a scrape, whichever process answers it, sums them. The gauges (index size, queue
depth, encoder swaps) are those of the process that answers."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
EXPOSED = "/metrics"  # where the routes serve `exposition()`
MULTIPROCESS = "PROMETHEUS_MULTIPROC_DIR"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.batch_size = Histogram(
            "xmr_encoder_batch_size", "Queries per encoder call (dynamic batching)",
            ["kind"], buckets=BATCH_BUCKETS, registry=self.registry)
        self.batch_seconds = Histogram(
            "xmr_encoder_batch_seconds", "Seconds per encoder call", ["kind"],
            buckets=LATENCY_BUCKETS, registry=self.registry)

        self.search_batch_size = Histogram(
            "xmr_search_batch_size", "Queries per index search call (batched like the encoder)",
            buckets=BATCH_BUCKETS, registry=self.registry)
        self.request_seconds = Histogram(
            "http_request_duration_seconds", "Seconds from request to the end of the answer",
            ["handler", "method", "status"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.requests = Counter(
            "http_requests", "HTTP requests answered", ["handler", "method", "status"],
            registry=self.registry)
        self._by_request: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._gauges: list[Collector] = []

    def observe_batch(self, kind: str, size: int, seconds: float) -> None:
        if kind == "search":
            self.search_batch_size.observe(size)
            return
        self.batch_size.labels(kind).observe(size)
        self.batch_seconds.labels(kind).observe(seconds)

    def observe_request(self, handler: str, method: str, status: int, seconds: float) -> None:
        if handler == EXPOSED:  # scrapes are not traffic
            return
        key = (handler, method, status)
        children = self._by_request.get(key)
        if children is None:  # labels() takes a lock and builds its key: once per label set
            labels = (handler, method, str(status))
            children = self._by_request[key] = (self.request_seconds.labels(*labels),
                                                self.requests.labels(*labels))
        children[0].observe(seconds)
        children[1].inc()

    def exposition(self) -> bytes:
        if not os.environ.get(MULTIPROCESS):
            return generate_latest(self.registry)
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged)
        for gauges in self._gauges:
            merged.register(gauges)
        return generate_latest(merged)

    def watch(self, state: Callable[[], dict[str, float]]) -> None:
        """Gauges read at scrape time: `state()` -> {name: value}."""
        self._gauges.append(_StateCollector(state))
        self.registry.register(self._gauges[-1])


class _StateCollector(Collector):
    def __init__(self, state: Callable[[], dict[str, float]]) -> None:
        self._state = state

    def collect(self) -> Iterator[GaugeMetricFamily]:
        values = self._state()
        items = GaugeMetricFamily("xmr_index_items", "Live items in the index", labels=["modality"])
        for modality in ("image", "text"):
            if f"items_{modality}" in values:
                items.add_metric([modality], values[f"items_{modality}"])
        yield items
        for name in ("queue_depth", "encoder_swaps"):
            if name in values:
                yield GaugeMetricFamily(f"xmr_{name}", name.replace("_", " "), value=values[name])
