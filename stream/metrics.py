"""Prometheus metrics of ``serve`` and its HTTP endpoints: /metrics, /healthz, /readyz."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

_LATENCY_BUCKETS = (
    0.001,
    0.002,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.02,
    0.025,
    0.035,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


class BatchHistogram(Collector):
    """A Prometheus histogram fed a whole batch of observations at once (one NumPy pass,
    not one Python call per record); exposed like ``prometheus_client.Histogram``."""

    def __init__(
        self, name: str, documentation: str, buckets: Sequence[float], registry: CollectorRegistry
    ) -> None:
        self.name, self.documentation = name, documentation
        self.bounds = np.asarray(sorted(buckets), dtype=np.float64)
        self._counts = np.zeros(len(self.bounds) + 1, dtype=np.int64)  # last: above every bound
        self._sum = 0.0
        self._lock = threading.Lock()
        registry.register(self)

    def observe_many(self, values: np.ndarray) -> None:
        if not len(values):
            return
        slots = np.searchsorted(self.bounds, values, side="left")  # value <= bound
        counts = np.bincount(slots, minlength=len(self._counts))
        total = float(np.sum(values))
        with self._lock:
            self._counts += counts
            self._sum += total

    def observe(self, value: float) -> None:
        self.observe_many(np.asarray([value], dtype=np.float64))

    def collect(self) -> Iterator[HistogramMetricFamily]:
        with self._lock:
            cumulative = np.cumsum(self._counts).tolist()
            total = self._sum
        buckets = [
            (_le(b), float(c)) for b, c in zip(self.bounds.tolist(), cumulative, strict=False)
        ]
        buckets.append(("+Inf", float(cumulative[-1])))
        family = HistogramMetricFamily(self.name, self.documentation)
        family.add_metric([], buckets, total)
        yield family

    def describe(self) -> Iterator[HistogramMetricFamily]:
        yield HistogramMetricFamily(self.name, self.documentation)


def _le(bound: float) -> str:
    return repr(float(bound))


class ServeMetrics:
    """Every metric ``serve`` exposes, in a registry of its own (several may live in a test)."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.e2e = BatchHistogram(
            "fraudstream_e2e_latency_seconds",
            "Kafka timestamp to decision",
            _LATENCY_BUCKETS,
            r,
        )
        self.stage = Histogram(
            "fraudstream_stage_latency_seconds",
            "Per-stage batch time",
            ["stage"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "fraudstream_batch_size",
            "Records per micro-batch",
            buckets=(1, 4, 16, 64, 128, 256, 512, 1024, 4096, 16384),
            registry=r,
        )
        self.transactions = Counter("fraudstream_transactions", "Input messages seen", registry=r)
        self.decisions = Counter(
            "fraudstream_decisions", "Decisions by outcome", ["decision"], registry=r
        )
        self.degraded = Counter(
            "fraudstream_degraded", "Decisions by degraded rung", ["rung"], registry=r
        )
        self.dead_letters = Counter(
            "fraudstream_dead_letters", "Dead letters by error code", ["code"], registry=r
        )
        self.group_order_overruns = Counter(
            "fraudstream_group_order_overruns",
            "Times this process went past the group's floor after it had not moved for "
            "30 s (fraudstream.stream.group_order)",
            registry=r,
        )
        self.dead_letters_truncated = Counter(
            "fraudstream_dead_letters_truncated",
            "Dead letters written cut down to the dead-letter topic's size limit",
            registry=r,
        )
        self.dead_letters_lost = Counter(
            "fraudstream_dead_letters_lost",
            "Dead letters given up after repeated failed writes (their offsets are logged)",
            registry=r,
        )
        self.flagged = Counter(
            "fraudstream_flagged_decisions",
            "Decisions the feature store flagged: conflicting_duplicate (a reused transaction "
            "id with other content), event_time_outlier, history_capped (a hot key's cap)",
            ["flag"],
            registry=r,
        )
        self.deadline_missed = Counter(
            "fraudstream_deadline_missed", "Decisions past budget", registry=r
        )
        self.lag = Gauge(
            "fraudstream_consumer_lag", "Messages behind the log end", ["partition"], registry=r
        )
        self.clock_skew = Gauge(
            "fraudstream_producer_clock_skew_seconds",
            "How far producers' timestamps run ahead (+) or behind (-) serve's clock beyond "
            "the tolerance, per input partition: the correction applied to budgets",
            ["partition"],
            registry=r,
        )
        self.model_info = Gauge(
            "fraudstream_model_info", "Model serving now", ["version", "device"], registry=r
        )
        self.model_load_errors = Counter(
            "fraudstream_model_load_errors",
            "Failed model loads (the old model kept serving)",
            registry=r,
        )
        self.store_pending = Gauge(
            "fraudstream_store_pending", "Transactions waiting for the feature store", registry=r
        )
        self.commit_seconds = Histogram(
            "fraudstream_commit_latency_seconds",
            "Offset commit / transaction commit time",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )

    def watch_customers(self, store: Any) -> None:
        """Customers held by ``--customer-state local`` (``LocalStore``): how many, and
        how many batches were computed again because a log or a claim changed under it."""
        if not hasattr(store, "held"):
            return
        r = self.registry
        held = Gauge(
            "fraudstream_store_customers_held", "Customers whose state serve holds", registry=r
        )
        held.set_function(lambda: store.held)
        retries = Gauge(
            "fraudstream_store_log_retries",
            "Batches computed again since start: a customer log or a claim changed under serve",
            registry=r,
        )
        retries.set_function(lambda: store.retries)

    def watch_lookahead(self, lookahead: Any) -> None:
        """Batches whose store call overlapped the batch before (``Lookahead``)."""
        if lookahead is None:
            return
        overlapped = Gauge(
            "fraudstream_store_lookahead_batches",
            "Batches since start whose store call ran while serve scored and emitted the "
            "batch before (input was waiting)",
            registry=self.registry,
        )
        overlapped.set_function(lambda: lookahead.overlapped)

    def watch_aligner(self, aligner: Any) -> None:
        """Records staged for timestamp order and partitions paused for staging too many
        (``PartitionAligner``)."""
        if aligner is None:
            return
        staged = Gauge(
            "fraudstream_input_staged_records",
            "Records taken from the consumer and held until the partitions behind catch up "
            "(timestamp order across partitions)",
            registry=self.registry,
        )
        staged.set_function(lambda: aligner.held)
        paused = Gauge(
            "fraudstream_input_paused_partitions",
            "Partitions paused because they ran ahead of the others' timestamps",
            registry=self.registry,
        )
        paused.set_function(lambda: aligner.paused_count)

    def watch_group_order(self, order: Any) -> None:
        """The group's floor (``GroupOrder``): the least event time a partition of the
        group has come to that bounds it (0: none does)."""
        if order is None:
            return
        floor = Gauge(
            "fraudstream_group_order_floor_timestamp_seconds",
            "Event time the group's slowest partition has come to: this process takes "
            "nothing dated past it plus the slack (0: none bounds it)",
            registry=self.registry,
        )
        floor.set_function(lambda: order.floor / 1e3 if order.floor != float("inf") else 0.0)
        errors = Gauge(
            "fraudstream_group_order_sync_errors",
            "Publications of this process's marks that failed (the bound is lifted meanwhile)",
            registry=self.registry,
        )
        errors.set_function(lambda: order.errors)

    def set_model(self, version: str | None, device: str) -> None:
        self.model_info.clear()
        if version is not None:
            self.model_info.labels(version=version, device=device).set(1)


Alive = Callable[[], tuple[bool, str]]
"""(alive, why) of the serve loop (``fraudstream.stream.liveness.Liveness.check``)."""


class HealthServer:
    """Serves /metrics, /healthz (the loop makes progress) and /readyz (ready to decide)."""

    def __init__(
        self,
        metrics: ServeMetrics,
        ready: Callable[[], bool],
        port: int,
        alive: Alive = lambda: (True, "ok"),
    ) -> None:
        handler = _handler(metrics.registry, ready, alive)
        self._server = ThreadingHTTPServer(("0.0.0.0", port), handler)  # noqa: S104 - probes
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, daemon=True, name="health-http"
        )

    def start(self) -> HealthServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler(
    registry: CollectorRegistry, ready: Callable[[], bool], alive: Alive
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            if self.path.startswith("/metrics"):
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif self.path == "/healthz":
                ok, why = alive()
                self._send(200 if ok else 503, f"{why}\n".encode(), "text/plain")
            elif self.path == "/readyz":
                ok = ready()
                self._send(200 if ok else 503, b"ready\n" if ok else b"not ready\n", "text/plain")
            else:
                self._send(404, b"not found\n", "text/plain")

        def _send(self, status: int, body: bytes, ctype: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            return

    return Handler
