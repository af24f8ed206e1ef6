"""Prometheus metrics of the label worker, on its own registry: pipeline counters, and KPI
and label-freshness gauges computed at each scrape (so no stale hour lingers)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from fraudstream.features.labels.freshness import FreshnessCollector, LabelFreshness
from fraudstream.features.labels.kpis import DECLINE, REVIEW, HourKpis
from fraudstream.features.labels.records import DECISIONS

KpiSource = Callable[[], list[HourKpis]]


class LabelMetrics:
    """Counters the pipeline increments, plus the KPI gauges."""

    def __init__(
        self, kpis: KpiSource | None = None, freshness: LabelFreshness | None = None
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.applied = Counter(
            "fraudstream_labels_applied", "Labels new to the feature store", registry=r
        )
        self.received = Counter(
            "fraudstream_labels_received", "Valid labels read (repeats included)", registry=r
        )
        self.dead_letters = Counter(
            "fraudstream_labels_dead_letters",
            "Malformed labels sent to the dead-letter topic",
            ["code"],
            registry=r,
        )
        self.store_retries = Counter(
            "fraudstream_labels_store_retries",
            "Failed attempts to write labels to the feature store",
            registry=r,
        )
        self.decisions_skipped = Counter(
            "fraudstream_kpi_decisions_skipped",
            "Decisions the KPIs could not use (no id, time, amount or outcome)",
            registry=r,
        )
        self.decisions_forwarded = Counter(
            "fraudstream_kpi_decisions_forwarded",
            "Decisions sent into the KPI join (redeliveries included)",
            registry=r,
        )
        self.decisions_lag = Gauge(
            "fraudstream_kpi_decisions_lag",
            "Decisions not yet read into the KPI join, over this worker's partitions of the"
            " decisions topic (as of the last second)",
            registry=r,
        )
        if kpis is not None:
            r.register(KpiCollector(kpis))
        if freshness is not None:
            r.register(FreshnessCollector(freshness))

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)


class KpiCollector(Collector):
    """``fraudstream_kpi_*`` gauges, labelled by hour of event time."""

    def __init__(self, source: KpiSource) -> None:
        self._source = source

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        hours = self._source()
        decisions = GaugeMetricFamily(
            "fraudstream_kpi_decisions", "Decisions by outcome", labels=["hour", "decision"]
        )
        frauds = GaugeMetricFamily(
            "fraudstream_kpi_confirmed_frauds", "Transactions labelled fraud", labels=["hour"]
        )
        by_decision = GaugeMetricFamily(
            "fraudstream_kpi_frauds_by_decision",
            "Confirmed frauds by the decision they got",
            labels=["hour", "decision"],
        )
        precision = GaugeMetricFamily(
            "fraudstream_kpi_precision",
            "Confirmed frauds among decisions of an outcome",
            labels=["hour", "decision"],
        )
        amount = GaugeMetricFamily(
            "fraudstream_kpi_fraud_amount",
            "Amount of confirmed frauds: caught (review/decline) or missed (approve)",
            labels=["hour", "outcome"],
        )
        for h in hours:
            for code, name in enumerate(DECISIONS):
                decisions.add_metric([h.hour, name], h.decisions(code))
                by_decision.add_metric([h.hour, name], h.frauds(code))
            frauds.add_metric([h.hour], h.confirmed_frauds)
            for code in (REVIEW, DECLINE):
                value = h.precision(code)
                if value is not None:
                    precision.add_metric([h.hour, DECISIONS[code]], value)
            amount.add_metric([h.hour, "caught"], h.caught_amount)
            amount.add_metric([h.hour, "missed"], h.missed_amount)
        yield from (decisions, frauds, by_decision, precision, amount)
