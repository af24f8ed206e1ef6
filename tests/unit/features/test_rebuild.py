"""The pure parts of ``features rebuild``: range planning, the horizon, ``behind``, the
report and the librdkafka settings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fraudstream.features.batch import TransactionBatch
from fraudstream.features.cli import RebuildSettings
from fraudstream.features.config import load_settings
from fraudstream.features.definitions import FeatureConfig
from fraudstream.features.memory_store import MemoryStore
from fraudstream.features.rebuild import (
    PartitionPlan,
    PartitionResult,
    RebuildReport,
    behind,
    horizon_ms,
    plan_partition,
)

DAY_MS = 86_400_000


def test_horizon_is_the_delayed_terminal_window_plus_a_day_of_slack() -> None:
    assert horizon_ms(FeatureConfig()) == (7 + 30 + 1) * DAY_MS
    wide = FeatureConfig(customer_windows_days=(1, 60), delay_days=7)
    assert horizon_ms(wide) == (60 + 1) * DAY_MS


def test_a_recorded_store_is_read_from_its_mark_to_the_committed_offset() -> None:
    plan = plan_partition(0, mark=120, committed=500, trusted=True, horizon_start=10, low=0)
    assert (plan.start, plan.end, plan.note) == (120, 500, "")
    assert plan.reason.startswith("mark behind")


def test_a_mark_at_or_past_the_committed_offset_needs_nothing() -> None:
    for mark in (500, 640):
        plan = plan_partition(1, mark, committed=500, trusted=True, horizon_start=10, low=0)
        assert plan.start >= plan.end


def test_without_a_rebuild_record_the_whole_horizon_is_read_even_with_marks() -> None:
    # marks written by serve into an emptied server say nothing about the history before
    for mark in (None, 500):
        plan = plan_partition(0, mark, committed=500, trusted=False, horizon_start=40, low=0)
        assert (plan.start, plan.end) == (40, 500)
        assert "whole feature horizon" in plan.reason


def test_a_partition_the_group_never_committed_is_left_alone() -> None:
    for committed in (None, -1001):
        plan = plan_partition(2, None, committed, trusted=False, horizon_start=0, low=0)
        assert plan.start >= plan.end and plan.committed is None


def test_records_no_longer_retained_are_named_and_skipped() -> None:
    plan = plan_partition(0, mark=100, committed=900, trusted=True, horizon_start=0, low=300)
    assert (plan.start, plan.end) == (300, 900)
    assert "offsets 100 to 299 are no longer retained" in plan.note


def test_behind_lists_partitions_whose_mark_is_below_the_committed_offset() -> None:
    store = MemoryStore(FeatureConfig())
    batch = TransactionBatch.from_columns(["a"], ["c"], ["t"], np.array([1_522_540_800_000]), [1.0])
    store.apply(batch, offsets={0: 10, 1: 7}, topic="tx")
    committed = {0: 10, 1: 9, 2: 4, 3: -1001, 4: 0}
    assert behind(store, committed, "tx") == {1: (7, 9), 2: (-1, 4)}
    assert behind(store, {0: 10}, "tx") == {}


def test_the_report_has_one_line_per_partition_then_labels_and_notes() -> None:
    done = PartitionPlan(0, None, 50, 10, 50, "no rebuild record (...)", "")
    idle = PartitionPlan(1, 80, 80, 80, 80, "mark at committed")
    report = RebuildReport(
        [PartitionResult(done, 38, 2, 1.25), PartitionResult(idle, 0, 0, 0.0)],
        labels_applied=3,
        notes=["retention"],
    )
    assert report.lines() == [
        "partition 0: from 10 to 50 (40 records) applied 38, skipped 2, 1.2 s - "
        "no rebuild record (...)",
        "partition 1: up to date (mark at committed)",
        "labels: applied 3, skipped 0",
        "note: retention",
    ]


def test_kafka_settings_are_the_shared_connection_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    monkeypatch.delenv("FRAUDSTREAM_CONFIG", raising=False)
    settings = load_settings(
        RebuildSettings,
        {
            "bootstrap_servers": "b:9092",
            "redis_url": "redis://localhost/0",
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_username": "u",
            "sasl_password_file": secret,
            "ssl_ca_location": tmp_path / "ca.pem",
        },
        None,
    )
    assert settings.kafka().to_librdkafka() == {
        "bootstrap.servers": "b:9092",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "u",
        "sasl.password": "s3cret",
        "ssl.ca.location": str(tmp_path / "ca.pem"),
    }
