"""Prometheus metrics: per-route latency (prometheus-fastapi-instrumentator), encoder batch
sizes and times, queue depth and index size. One registry per app, so several apps (tests)
can live in one process."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from prometheus_fastapi_instrumentator import Instrumentator, metrics

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


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

    def observe_batch(self, kind: str, size: int, seconds: float) -> None:
        if kind == "search":
            self.search_batch_size.observe(size)
            return
        self.batch_size.labels(kind).observe(size)
        self.batch_seconds.labels(kind).observe(seconds)

    def watch(self, state: Callable[[], dict[str, float]]) -> None:
        """Gauges read at scrape time: `state()` -> {name: value}."""
        self.registry.register(_StateCollector(state))

    def instrument(self, app: FastAPI) -> None:
        instrumentator = Instrumentator(
            should_group_status_codes=False, excluded_handlers=["/metrics"],
            registry=self.registry)
        instrumentator.add(metrics.latency(
            metric_name="http_request_duration_seconds", buckets=LATENCY_BUCKETS,
            registry=self.registry))
        instrumentator.add(metrics.requests(registry=self.registry))
        instrumentator.instrument(app).expose(app, include_in_schema=True, tags=["health"])


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
