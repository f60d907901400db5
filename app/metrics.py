"""Prometheus metrics of the API process."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

REGISTRY = CollectorRegistry()
REQUESTS = Histogram(
    "boxal_request_seconds",
    "HTTP request latency",
    ["method", "route", "status"],
    registry=REGISTRY,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
LEASED = Counter("boxal_queries_leased_total", "queries handed to annotators", registry=REGISTRY)
ANSWERED = Counter(
    "boxal_labels_recorded_total", "answers recorded (not counting idempotent repeats)", registry=REGISTRY
)
