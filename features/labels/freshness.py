"""Label freshness: when this worker last applied a label, per partition of the labels topic,
the newest label time among them, and whether labels have stopped while decisions flow.

*Stale* means: no label applied for more than ``stale_after_s`` (counted from the worker's
start while none was), while a decision arrived within the last ``stale_after_s``, and this
worker holds at least one partition of the labels topic. Quiet decisions mean a quiet
stream, not a broken label feed; a worker holding no label partition has none to miss.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

Clock = Callable[[], float]
"""Wall clock, epoch seconds."""
Held = Callable[[], Collection[int] | None]
"""Partitions of the labels topic this worker holds now; None when unknown (all count)."""


@dataclass
class PartitionFreshness:
    """What was last applied from one partition of the labels topic."""

    applied_at_s: float
    """Wall clock when a label of this partition last reached the store, epoch s."""
    label_time_ms: int
    """Newest ``label_time`` among the labels applied from this partition, epoch ms."""


class LabelFreshness:
    """Tracks label and decision arrivals; says (and logs) when labels are stale."""

    def __init__(
        self, stale_after_s: float, clock: Clock = time.time, held: Held | None = None
    ) -> None:
        self.stale_after_s = stale_after_s
        self._clock = clock
        self._held: Held = held or (lambda: None)
        self._started_s = clock()
        self._partitions: dict[int, PartitionFreshness] = {}
        self._last_label_s: float | None = None
        self._last_decision_s: float | None = None
        self._warned_s: float | None = None

    def labels_applied(self, partition: int, label_times_ms: Iterable[int]) -> None:
        """Labels of ``partition`` (with these label times) just reached the store."""
        newest = max(label_times_ms, default=None)
        if newest is None:
            return
        now = self._clock()
        known = self._partitions.get(partition)
        if known is not None:
            newest = max(newest, known.label_time_ms)
        self._partitions[partition] = PartitionFreshness(now, newest)
        self._last_label_s = now

    def now(self) -> float:
        """The injected clock's time."""
        return self._clock()

    def decisions_seen(self) -> None:
        """Decisions (the transactions' outcomes) just arrived."""
        self._last_decision_s = self._clock()

    def partitions(self) -> dict[int, PartitionFreshness]:
        """The held partitions a label was applied from (all seen when ``held`` is unknown)."""
        held = self._held()
        return {p: state for p, state in self._partitions.items() if held is None or p in held}

    def silence_s(self, now: float | None = None) -> float:
        """Seconds since the last label applied (since the start while none was)."""
        now = self._clock() if now is None else now
        since = self._last_label_s if self._last_label_s is not None else self._started_s
        return max(0.0, now - since)

    def is_stale(self, now: float | None = None) -> bool:
        """See the module docstring."""
        now = self._clock() if now is None else now
        if self._last_decision_s is None or now - self._last_decision_s > self.stale_after_s:
            return False
        held = self._held()
        if held is not None and not held:
            return False
        return self.silence_s(now) > self.stale_after_s

    def check(self) -> bool:
        """``is_stale``, logged: a warning when labels become stale and again every
        ``stale_after_s`` while they stay so, an info line when they flow again."""
        now = self._clock()
        stale = self.is_stale(now)
        if stale and (self._warned_s is None or now - self._warned_s >= self.stale_after_s):
            logger.warning(
                "labels stale: none applied for %.0f s while decisions keep arriving "
                "(threshold %g s, --labels-stale-after-s): is the labels producer running, "
                "on the topic this worker reads, with a codec it can decode?",
                self.silence_s(now),
                self.stale_after_s,
            )
            self._warned_s = now
        elif not stale and self._warned_s is not None:
            if self.silence_s(now) <= self.stale_after_s:
                logger.info("labels flowing again")
            else:
                logger.info("labels still silent, but decisions stopped too: no longer stale")
            self._warned_s = None
        return stale


class FreshnessCollector(Collector):
    """``fraudstream_labels_*`` freshness gauges, computed at each scrape."""

    def __init__(self, freshness: LabelFreshness) -> None:
        self._freshness = freshness

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        f = self._freshness
        now = f.now()
        applied = GaugeMetricFamily(
            "fraudstream_labels_last_applied_timestamp_seconds",
            "Wall clock when a label of this labels-topic partition last reached the store",
            labels=["partition"],
        )
        age = GaugeMetricFamily(
            "fraudstream_labels_last_applied_age_seconds",
            "Seconds since a label of this labels-topic partition last reached the store",
            labels=["partition"],
        )
        newest = GaugeMetricFamily(
            "fraudstream_labels_newest_label_time_seconds",
            "Newest label_time among the labels applied from this partition",
            labels=["partition"],
        )
        for partition, state in sorted(f.partitions().items()):
            applied.add_metric([str(partition)], state.applied_at_s)
            age.add_metric([str(partition)], max(0.0, now - state.applied_at_s))
            newest.add_metric([str(partition)], state.label_time_ms / 1000)
        yield from (applied, age, newest)
        yield GaugeMetricFamily(
            "fraudstream_labels_silence_seconds",
            "Seconds since any label reached the store (since the start while none did)",
            value=f.silence_s(now),
        )
        yield GaugeMetricFamily(
            "fraudstream_labels_stale",
            "1 while no label was applied for longer than the threshold and decisions flow",
            value=1.0 if f.is_stale(now) else 0.0,
        )
        yield GaugeMetricFamily(
            "fraudstream_labels_stale_after_seconds",
            "The staleness threshold (--labels-stale-after-s)",
            value=f.stale_after_s,
        )
