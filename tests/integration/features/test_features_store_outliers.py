"""Issue 24, finding 4: no single record hides other records' history. A record dated far
ahead of its stream trims nothing, redelivered old transactions stay idempotent, rows far
from their watermark are flagged; labels are robust the same way. In-process store, a
single Redis and a Redis Cluster alike."""

from __future__ import annotations

import numpy as np
import pytest

from fraudstream.features.definitions import DAY_S, FEATURE_NAMES
from fraudstream.features.memory_store import MemoryStore
from fraudstream.features.offline import compute_features
from fraudstream.features.schema import Label
from fraudstream.features.store import FLAG_OUTLIER, SLACK_S, FeatureStore
from tests.integration.features.stores import StoreFactory, batch, frame

pytestmark = pytest.mark.integration

T0 = 1_522_540_800_000  # 2018-04-01
DAY = DAY_S * 1000
AHEAD = T0 + 8 * 365 * DAY  # 2026
COL = {name: i for i, name in enumerate(FEATURE_NAMES)}


Row = tuple[str, str, str, int, float]


def _stream(n: int = 60) -> list[Row]:
    """One customer and one terminal over 50 days, one record every 20 hours, and a
    bystander customer on the same terminal."""
    rows = []
    for i in range(n):
        rows.append((f"c{i}", "cust", "term", T0 + i * 20 * 3_600_000, float(10 + i)))
        rows.append((f"b{i}", f"by{i % 3}", "term", T0 + i * 20 * 3_600_000 + 1000, 5.0))
    return rows


def _apply_in_batches(
    store: FeatureStore, rows: list[Row], watermark_s: np.ndarray | None = None, size: int = 9
) -> tuple[np.ndarray, np.ndarray]:
    out, flags = [], []
    for lo in range(0, len(rows), size):
        wm = None if watermark_s is None else watermark_s[lo : lo + size]
        got, f = store.apply_flagged(batch(rows[lo : lo + size]), watermark_s=wm)
        out.append(got)
        flags.append(f)
    return np.vstack(out), np.concatenate(flags)


def test_a_record_dated_years_ahead_wipes_no_history(make_store: StoreFactory) -> None:
    rows = _stream()
    rows.insert(50, ("ahead", "cust", "term", AHEAD, 7.0))  # the record dated today
    store = make_store()
    online, flags = _apply_in_batches(store, rows)
    # every row, the outlier's too, as offline on the whole input: the record dated ahead
    # sorts last and is in no window of the others
    offline = compute_features(frame(rows))
    np.testing.assert_allclose(online, offline, rtol=1e-12, atol=0)
    assert flags.tolist() == [0] * len(rows)  # no watermark: nothing to be far from
    last = rows.index(("c59", "cust", "term", T0 + 59 * 20 * 3_600_000, 69.0))
    assert online[last, COL["customer_nb_tx_30d"]] == 36  # not 1-5 as in the issue
    assert online[last, COL["terminal_nb_tx_30d"]] == 72  # not 0
    # redelivered transactions of the last 20 days (within what is kept): the vectors they
    # got, nothing counted twice
    recent = [i for i, r in enumerate(rows) if rows[last][3] - 20 * DAY < r[3] < AHEAD]
    again = store.apply(batch([rows[i] for i in recent]))
    np.testing.assert_array_equal(again, online[recent])
    probe = [("probe", "cust", "term", rows[-1][3] + 1000, 1.0)]
    reference = MemoryStore()
    reference.apply(batch(rows))
    np.testing.assert_array_equal(store.apply(batch(probe)), reference.apply(batch(probe)))


def test_with_watermarks_only_the_far_rows_are_flagged(make_store: StoreFactory) -> None:
    rows = _stream()
    rows.insert(50, ("ahead", "cust", "term", AHEAD, 7.0))
    rows.insert(70, ("ahead2", "cust", "term", AHEAD + 1000, 8.0))  # a second one: still fine
    rows.insert(90, ("late", "cust", "term", rows[89][3] - 60 * DAY, 9.0))  # 60 days late
    sec = np.array([r[3] // 1000 for r in rows])
    watermark = np.maximum.accumulate(np.where(sec > sec[0] + 100 * DAY_S, 0, sec))
    store = make_store()
    online, flags = _apply_in_batches(store, rows, watermark_s=watermark)
    far = {i for i, r in enumerate(rows) if r[0] in ("ahead", "ahead2", "late")}
    assert [i for i, f in enumerate(flags) if f] == sorted(far)
    assert all(flags[i] == FLAG_OUTLIER for i in far)
    # the others: as offline without the far rows (those ahead are in no window of theirs,
    # the late one is older than anything kept, so it is not added)
    others = [i for i in range(len(rows)) if i not in far]
    offline = compute_features(frame([rows[i] for i in others]))
    np.testing.assert_allclose(online[others], offline, rtol=1e-12, atol=0)


def test_a_late_record_within_the_slack_is_exact_and_not_flagged(
    make_store: StoreFactory,
) -> None:
    rows = _stream()
    late = ("late", "cust", "term", rows[-1][3] - SLACK_S * 1000 + 60_000, 3.0)
    store = make_store()
    store.apply(batch(rows))
    got, flags = store.apply_flagged(batch([late]))
    assert flags.tolist() == [0]
    reference = compute_features(frame([*rows, late]))
    np.testing.assert_allclose(got[0], reference[-1], rtol=1e-12, atol=0)


def test_a_label_dated_far_ahead_forgets_no_other_label(make_store: StoreFactory) -> None:
    store = make_store()
    frauds = [("f1", "c1", "T", T0, 1.0), ("f2", "c2", "T", T0 + 1000, 1.0)]
    store.apply(batch(frauds))
    labels = [Label(tx, c, t, ms, ms + 7 * DAY, True) for tx, c, t, ms, _ in frauds]
    assert store.apply_labels(labels) == 2
    assert store.apply_labels([Label("z", "c9", "T", AHEAD, AHEAD, True)]) == 1
    assert store.apply_labels(labels) == 0  # still known: counted once
    out = store.apply(batch([("q", "c3", "T", T0 + 7 * DAY + 5000, 1.0)]))
    assert out[0, COL["terminal_nb_tx_1d"]] == 2
    assert out[0, COL["terminal_risk_1d"]] == 1.0


def test_a_watermark_of_the_wrong_length_is_refused(make_store: StoreFactory) -> None:
    store = make_store()
    with pytest.raises(ValueError, match="watermark_s has 1 values for a batch of 2 rows"):
        store.apply_flagged(batch(_stream(1)), watermark_s=[T0 // 1000])
