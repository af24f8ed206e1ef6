"""Issue 24: hypothesis-generated interleavings of redeliveries and out-of-order records.

- Each customer's records in order (one partition each), customers interleaved up to a
  day apart, redeliveries anywhere after the first delivery: every row, the redelivered
  ones too, is the offline computation on the de-duplicated, time-sorted input (equal
  times in the order they came).
- Any order up to a day late: every row is the offline computation over the records
  applied before it (its own included); nothing is flagged.

For the in-process store, a single Redis and a Redis Cluster, with batches and script
calls of random sizes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fraudstream.features.offline import compute_features
from fraudstream.features.store import SLACK_S
from tests.integration.features.stores import StoreFactory, batch, frame

pytestmark = pytest.mark.integration

T0_S = 1_522_540_800
Row = tuple[str, str, str, int, float]
SETTINGS = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@st.composite
def _records(draw: st.DrawFn) -> list[Row]:
    """Up to 40 records of 3 customers and 2 terminals over 40 days, at multiples of 6 hours
    give or take a second: window bounds fall on other records, just before or after."""
    n = draw(st.integers(2, 40))
    grid = st.tuples(st.integers(0, 160), st.integers(-1, 1)).map(lambda k: k[0] * 21_600 + k[1])
    return [
        (
            f"x{i}",
            f"c{draw(st.integers(0, 2))}",
            f"t{draw(st.integers(0, 1))}",
            (T0_S + draw(grid)) * 1000,
            draw(st.integers(0, 100_000)) / 100,
        )
        for i in range(n)
    ]


def _redeliver(draw: st.DrawFn, rows: list[Row]) -> list[Row]:
    """Up to 10 redeliveries, each after its first delivery."""
    for _ in range(draw(st.integers(0, 10))):
        at = draw(st.integers(0, len(rows) - 1))
        rows.insert(draw(st.integers(at + 1, len(rows))), rows[at])
    return rows


@st.composite
def _by_partition(draw: st.DrawFn) -> list[Row]:
    """Each customer's records in time order, customers up to a day apart, redeliveries."""
    records = draw(_records())
    lag = {f"c{k}": draw(st.integers(0, SLACK_S)) for k in range(3)}
    return _redeliver(draw, sorted(records, key=lambda r: (r[3] // 1000 + lag[r[1]], r[0])))


@st.composite
def _any_order(draw: st.DrawFn) -> list[Row]:
    """Any order with each record up to a day late, redeliveries."""
    records = draw(_records())
    late = {r[0]: draw(st.integers(0, SLACK_S)) for r in records}
    return _redeliver(draw, sorted(records, key=lambda r: (r[3] // 1000 + late[r[0]], r[0])))


def _apply(make: StoreFactory, deliveries: list[Row], cuts: list[int], chunk: int) -> tuple:
    store = make(chunk_size=chunk)
    out, flags = [], []
    bounds = [0, *sorted(c % len(deliveries) for c in cuts), len(deliveries)]
    for lo, hi in zip(bounds, bounds[1:], strict=False):
        if hi > lo:
            got, f = store.apply_flagged(batch(deliveries[lo:hi]))
            out.append(got)
            flags.append(f)
    return np.vstack(out), np.concatenate(flags)


def _first_rows(deliveries: list[Row]) -> list[Row]:
    seen: dict[str, Row] = {}
    for row in deliveries:
        seen.setdefault(row[0], row)
    return list(seen.values())


@given(
    deliveries=_by_partition(),
    cuts=st.lists(st.integers(0, 100), max_size=6),
    chunk=st.integers(1, 9),
)
@SETTINGS
def test_partitioned_redelivered_input_equals_offline_on_the_deduplicated_sorted_input(
    make_store: StoreFactory, deliveries: list[Row], cuts: list[int], chunk: int
) -> None:
    online, flags = _apply(make_store, deliveries, cuts, chunk)
    records = sorted(_first_rows(deliveries), key=lambda r: r[3])
    offline = dict(zip([r[0] for r in records], compute_features(frame(records)), strict=True))
    want = np.vstack([offline[r[0]] for r in deliveries])
    assert flags.tolist() == [0] * len(deliveries)
    np.testing.assert_allclose(online, want, rtol=1e-12, atol=0)


@given(
    deliveries=_any_order(),
    cuts=st.lists(st.integers(0, 100), max_size=6),
    chunk=st.integers(1, 9),
)
@SETTINGS
def test_out_of_order_input_within_a_day_equals_offline_over_what_came_before(
    make_store: StoreFactory, deliveries: list[Row], cuts: list[int], chunk: int
) -> None:
    online, flags = _apply(make_store, deliveries, cuts, chunk)
    applied: list[Row] = []
    first: dict[str, np.ndarray] = {}
    for row in deliveries:
        if row[0] not in first:
            applied.append(row)
            first[row[0]] = compute_features(frame(applied))[-1]
    want = np.vstack([first[r[0]] for r in deliveries])
    assert flags.tolist() == [0] * len(deliveries)
    np.testing.assert_allclose(online, want, rtol=1e-12, atol=0)
