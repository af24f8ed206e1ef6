"""Label freshness with an injected clock: per-partition times and ages, the stale rule
(labels silent past the threshold while decisions flow, on a worker holding label
partitions), its warning and recovery lines, and the gauges as Prometheus renders them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection

import pytest
from prometheus_client import generate_latest

from fraudstream.features.labels.applier import LabelWriter
from fraudstream.features.labels.deadletter import Source
from fraudstream.features.labels.forwarder import DecisionForwarder, decode_decisions
from fraudstream.features.labels.freshness import LabelFreshness
from fraudstream.features.labels.metrics import LabelMetrics
from fraudstream.features.labels.pipeline import LabelPipeline, RawMessage
from fraudstream.features.labels.settings import LabelSettings
from fraudstream.features.schema import Label, encode_label
from tests.integration.labels.harness import metric_value
from tests.unit.deploy.contract import LABEL_METRICS

T0 = 1_800_000_000.0
STALE = "fraudstream_labels_stale"


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _label_settings() -> LabelSettings:
    return LabelSettings(bootstrap_servers="k:1", redis_url="redis://r")  # type: ignore[arg-type]


def _fresh(stale_after_s: float = 60.0, held: Collection[int] | None = None):
    clock = Clock()
    freshness = LabelFreshness(stale_after_s, clock, held=(lambda: held))
    return freshness, clock


def _gauges(freshness: LabelFreshness) -> str:
    return generate_latest(LabelMetrics(freshness=freshness).registry).decode()


def test_each_partition_keeps_its_last_apply_time_and_newest_label_time() -> None:
    f, clock = _fresh()
    f.labels_applied(0, [5_000, 9_000, 7_000])
    clock.now += 10
    f.labels_applied(1, [3_000])
    clock.now += 5
    f.labels_applied(0, [8_000])  # older label time than already seen: the newest stays
    parts = f.partitions()
    assert parts[0].applied_at_s == T0 + 15 and parts[0].label_time_ms == 9_000
    assert parts[1].applied_at_s == T0 + 10 and parts[1].label_time_ms == 3_000
    clock.now += 20
    text = _gauges(f)
    age = "fraudstream_labels_last_applied_age_seconds"
    assert metric_value(text, age, partition="0") == 20
    assert metric_value(text, age, partition="1") == 25
    at = "fraudstream_labels_last_applied_timestamp_seconds"
    assert metric_value(text, at, partition="1") == T0 + 10
    assert metric_value(text, "fraudstream_labels_newest_label_time_seconds", partition="0") == 9
    assert metric_value(text, "fraudstream_labels_silence_seconds") == 20
    assert metric_value(text, "fraudstream_labels_stale_after_seconds") == 60


def test_an_empty_batch_is_no_label() -> None:
    f, clock = _fresh()
    clock.now += 30
    f.labels_applied(0, [])
    assert f.partitions() == {}
    assert f.silence_s() == 30


def test_stale_only_past_the_threshold_while_decisions_flow() -> None:
    f, clock = _fresh(stale_after_s=60)
    f.labels_applied(0, [1])
    clock.now += 59
    f.decisions_seen()
    clock.now += 1  # silent 60 s: not past the threshold yet
    assert not f.is_stale()
    clock.now += 0.5
    assert f.is_stale()
    clock.now += 58.5  # the last decision is now 60 s old: still flowing
    assert f.is_stale()
    clock.now += 0.5  # and now older than the threshold: decisions stopped too
    assert not f.is_stale()
    f.decisions_seen()
    assert f.is_stale()
    f.labels_applied(1, [2])
    assert not f.is_stale()


def test_a_worker_that_never_got_a_label_counts_from_its_start() -> None:
    f, clock = _fresh(stale_after_s=60)
    clock.now += 30
    f.decisions_seen()
    assert not f.is_stale()
    clock.now += 31
    f.decisions_seen()
    assert f.is_stale()
    assert metric_value(_gauges(f), STALE) == 1


def test_no_decisions_ever_is_never_stale() -> None:
    f, clock = _fresh(stale_after_s=60)
    clock.now += 10_000
    assert not f.is_stale()
    assert metric_value(_gauges(f), STALE) == 0


def test_a_worker_holding_no_label_partition_is_never_stale() -> None:
    held: set[int] = set()
    f, clock = _fresh(stale_after_s=60, held=held)
    f.labels_applied(3, [1])
    clock.now += 120
    f.decisions_seen()
    assert not f.is_stale()
    assert f.partitions() == {}, "a partition no longer held is not reported"
    held.add(4)
    assert f.is_stale()
    assert f.partitions() == {}
    held.add(3)
    assert list(f.partitions()) == [3]


def test_check_warns_once_per_threshold_and_says_when_labels_flow_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="fraudstream.features.labels.freshness")
    f, clock = _fresh(stale_after_s=60)
    f.labels_applied(0, [1])
    for _ in range(30):  # 150 s of decisions every 5 s, no label
        clock.now += 5
        f.decisions_seen()
        f.check()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    # stale from 60.x s on (at 65 s, then again 60 s later at 125 s)
    assert [r.getMessage().split(" while")[0] for r in warnings] == [
        "labels stale: none applied for 65 s",
        "labels stale: none applied for 125 s",
    ]
    assert "--labels-stale-after-s" in warnings[0].getMessage()
    caplog.clear()
    f.labels_applied(0, [2])
    assert f.check() is False
    assert [r.getMessage() for r in caplog.records] == ["labels flowing again"]
    caplog.clear()
    assert f.check() is False
    assert caplog.records == [], "one recovery line, not one per check"


def test_the_pipeline_reports_applied_labels_per_source_partition_and_decisions() -> None:
    class Store:
        def apply_labels(self, labels: object) -> int:
            return 0

    async def send(*_args: object) -> asyncio.Future[object]:
        fut: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut

    f, clock = _fresh(stale_after_s=60)
    pipeline = LabelPipeline(LabelWriter(Store()), LabelMetrics(), send, send, 2, f)

    def msg(partition: int, offset: int, label_time_ms: int | None) -> RawMessage:
        t = 1_522_540_800_000
        label = Label(f"tx{offset}", "c", "t", t, t + (label_time_ms or 0), False)
        value = encode_label(label) if label_time_ms is not None else b"not json"
        return RawMessage(None, value, [], Source("fraud.labels", partition, offset))

    batch = [msg(0, 1, 5_000), msg(1, 2, 7_000), msg(0, 3, 6_000), msg(1, 4, None)]
    asyncio.run(pipeline.handle_labels(batch))
    parts = f.partitions()
    t = 1_522_540_800_000
    assert {p: s.label_time_ms for p, s in parts.items()} == {0: t + 6_000, 1: t + 7_000}
    clock.now += 61
    assert not f.is_stale(), "no decision yet"
    forwarder = DecisionForwarder(_label_settings(), LabelMetrics(), f)
    usable, skipped = decode_decisions([b"{}"])
    assert (usable, skipped) == ([], 1)
    forwarder.note_batch(skipped)
    assert f.is_stale(), "a decision the KPIs cannot use still shows transactions flow"


def test_the_deployment_contract_names_only_metrics_the_worker_exposes() -> None:
    """The dashboard's queries are checked against ``LABEL_METRICS``; this checks that
    list against what the worker's registry renders (a label applied, so every family
    has a sample)."""
    f, _clock = _fresh()
    f.labels_applied(0, [1_000])
    text = generate_latest(LabelMetrics(list, f).registry).decode()
    types = dict(line.split()[2:4] for line in text.splitlines() if line.startswith("# TYPE "))
    for name, kind in LABEL_METRICS.items():
        assert types.get(name) == kind, name
