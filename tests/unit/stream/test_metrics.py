"""serve's batch histogram exposes what prometheus_client's Histogram would, fed one by one."""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from fraudstream.stream.metrics import _LATENCY_BUCKETS, BatchHistogram


def _lines(registry: CollectorRegistry) -> dict[str, float]:
    out = {}
    for line in generate_latest(registry).decode().splitlines():
        if line.startswith("#") or "_created" in line:
            continue
        name, value = line.rsplit(" ", 1)
        out[name] = float(value)
    return out


def test_batches_expose_the_same_buckets_count_and_sum_as_single_observations() -> None:
    rng = np.random.default_rng(3)
    values = np.concatenate([rng.exponential(0.03, 2_000), _LATENCY_BUCKETS, [0.0, 50.0]])
    one_by_one, batched = CollectorRegistry(), CollectorRegistry()
    reference = Histogram("lat_seconds", "d", buckets=_LATENCY_BUCKETS, registry=one_by_one)
    histogram = BatchHistogram("lat_seconds", "d", _LATENCY_BUCKETS, batched)
    for v in values:
        reference.observe(float(v))
    for chunk in np.array_split(values, 7):  # several batches, one of them empty-safe
        histogram.observe_many(chunk)
    histogram.observe_many(np.empty(0))
    want, got = _lines(one_by_one), _lines(batched)
    assert set(want) == set(got)
    for name in want:
        assert got[name] == pytest.approx(want[name], rel=1e-12), name
    assert got['lat_seconds_bucket{le="+Inf"}'] == len(values)
