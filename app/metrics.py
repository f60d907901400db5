"""Prometheus metrics of every boxal process: the API's requests, leases and answers; the workers' stage
durations, training loss and scoring shards; the queue and shard backlog, read when scraped.

`boxal serve` runs several processes (``BOXAL_API_WORKERS`` API processes, the embedded worker and its
pool). It points ``PROMETHEUS_MULTIPROC_DIR`` at ``<data dir>/metrics`` (emptied at start) before any of
them imports prometheus_client, so each writes its samples there and a scrape of any API process sums
them all: prometheus_client's multiprocess mode. A worker on another machine of the same deployment joins
when it shares that directory (a volume); without the variable every process keeps its own samples.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # set by app/serving.py's prepare_metrics, before this import

REGISTRY = CollectorRegistry()  # this process's own metrics (aggregated from the directory in multiprocess)
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
STAGE_SECONDS = Histogram(
    "boxal_stage_seconds",
    "how long a worker took for one task of a round's stage (training, scoring a shard, ranking, ...)",
    ["stage"],
    registry=REGISTRY,
    buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 12 * 3600),
)
TRAINING_LOSS = Gauge(
    "boxal_training_loss",
    "total training loss at the end of the latest epoch, per project",
    ["project"],
    registry=REGISTRY,
    multiprocess_mode="mostrecent",
)
TRAINING_EPOCHS = Counter("boxal_training_epochs_total", "training epochs finished", registry=REGISTRY)
SHARDS_SCORED = Counter("boxal_shards_scored_total", "scoring shards finished by workers", registry=REGISTRY)
MESSAGES_SET_ASIDE = Counter(
    "boxal_broker_messages_set_aside_total",
    "embedded broker: queue files that could not be read, moved to <data dir>/broker/rejected",
    registry=REGISTRY,
)


class Backlog(Collector):
    """Gauges read at scrape time from the broker and the database, so they are right whichever process
    or machine does the work: tasks waiting in the queue, and scoring shards of scoring rounds."""

    def __init__(self, queue_depth: Callable[[], int | None], shards: Callable[[], dict[str, int]]) -> None:
        self.queue_depth = queue_depth
        self.shards = shards

    def collect(self) -> Iterator[GaugeMetricFamily]:
        depth = self.queue_depth()
        if depth is not None:  # the broker did not answer: no sample rather than a wrong one
            yield GaugeMetricFamily("boxal_queue_depth", "tasks waiting in the worker queue", value=depth)
        family = GaugeMetricFamily(
            "boxal_shards", "scoring shards of rounds now scoring, by state", labels=["state"]
        )
        for state, count in self.shards().items():
            family.add_metric([state], count)
        yield family


def scrape(backlog: Collector) -> bytes:
    """The exposition text: every process's samples (multiprocess) or this one's, then the backlog."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    live = CollectorRegistry()
    live.register(backlog)
    return generate_latest(registry) + generate_latest(live)
