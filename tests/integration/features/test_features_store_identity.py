"""Issue 24, finding 3: a transaction id reused with other content is a conflict. The copy is
decided on its own content (read-only, as if applied) and flagged; the store is unchanged.
In-process store, a single Redis and a Redis Cluster alike."""

from __future__ import annotations

import numpy as np
import pytest

from fraudstream.features.definitions import DAY_S, FEATURE_NAMES
from fraudstream.features.memory_store import MemoryStore
from fraudstream.features.store import FLAG_CONFLICT
from tests.integration.features.stores import StoreFactory, batch

pytestmark = pytest.mark.integration

T0 = 1_522_540_800_000
HOUR = 3_600_000
COL = {name: i for i, name in enumerate(FEATURE_NAMES)}
HISTORY = [(f"h{i}", "c", "t", T0 + i * HOUR, 20.0) for i in range(5)]
FIRST = ("x", "c", "t", T0 + 6 * HOUR, 10.0)


def _reference(*rows: tuple[str, str, str, int, float]) -> MemoryStore:
    ref = MemoryStore()
    ref.apply(batch(list(rows)))
    return ref


@pytest.mark.parametrize(
    "copy",
    [
        ("x", "c", "t", T0 + 6 * HOUR, 5000.0),  # the issue's case: the amount changed
        ("x", "other", "t", T0 + 6 * HOUR, 10.0),  # another customer
        ("x", "c", "other", T0 + 6 * HOUR, 10.0),  # another terminal
        ("x", "c", "t", T0 + 6 * HOUR + 1, 10.0),  # one millisecond later
        ("x", "c", "t", T0 + 9 * DAY_S * 1000, 10.0),  # another week: another rows hash
    ],
    ids=["amount", "customer", "terminal", "event-ms", "event-week"],
)
def test_a_reused_id_with_other_content_is_decided_on_its_own_and_changes_nothing(
    make_store: StoreFactory, copy: tuple[str, str, str, int, float]
) -> None:
    store = make_store()
    store.apply(batch([*HISTORY, FIRST]))
    got, flags = store.apply_flagged(batch([copy]))
    assert flags.tolist() == [FLAG_CONFLICT]
    # its own content, as if applied on top of what the store holds
    want = _reference(*HISTORY, FIRST).apply(batch([("fresh", *copy[1:])]))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)
    # nothing changed: the first content is still the one known, counted once
    again, again_flags = store.apply_flagged(batch([FIRST]))
    assert again_flags.tolist() == [0]
    np.testing.assert_array_equal(again, _reference(*HISTORY).apply(batch([FIRST])))
    week = 7 * DAY_S * 1000
    probes = [
        ("p1", FIRST[1], FIRST[2], FIRST[3] + 1000, 1.0),  # customer windows
        ("p2", copy[1], copy[2], copy[3] + 1000, 1.0),
        ("p3", "q", FIRST[2], FIRST[3] + week, 1.0),  # terminal windows, a delay later
        ("p4", "q", copy[2], copy[3] + week, 1.0),
    ]
    np.testing.assert_array_equal(
        store.apply(batch(probes)), _reference(*HISTORY, FIRST).apply(batch(probes))
    )


def test_the_issue_s_amount_change_is_not_scored_with_the_first_features(
    make_store: StoreFactory,
) -> None:
    store = make_store()
    store.apply(batch(HISTORY))
    small, _ = store.apply_flagged(batch([FIRST]))
    big, flags = store.apply_flagged(batch([("x", "c", "t", T0 + 6 * HOUR, 5000.0)]))
    assert flags.tolist() == [FLAG_CONFLICT]
    assert small[0, COL["tx_amount"]] == 10.0
    assert big[0, COL["tx_amount"]] == 5000.0
    # the first one counts, the copy counts as itself (read-only): 5 + 1 + 1
    assert big[0, COL["customer_nb_tx_1d"]] == 7
    assert big[0, COL["customer_avg_amount_1d"]] == pytest.approx((5 * 20 + 10 + 5000) / 7)


def test_within_one_batch_the_first_content_wins(make_store: StoreFactory) -> None:
    store = make_store()
    copy = ("x", "c", "t", T0 + 6 * HOUR, 5000.0)
    out, flags = store.apply_flagged(batch([*HISTORY, FIRST, copy, FIRST]))
    assert flags.tolist() == [0] * 5 + [0, FLAG_CONFLICT, 0]
    np.testing.assert_array_equal(out[5], out[7])  # a redelivery: the same vector
    assert out[5, COL["customer_nb_tx_1d"]] == 6
    assert out[6, COL["customer_nb_tx_1d"]] == 7


def test_a_redelivery_with_the_same_content_is_not_flagged(make_store: StoreFactory) -> None:
    store = make_store()
    first, first_flags = store.apply_flagged(batch([*HISTORY, FIRST]))
    again, again_flags = store.apply_flagged(batch([*HISTORY, FIRST][::-1]))
    assert first_flags.tolist() == again_flags.tolist() == [0] * 6
    np.testing.assert_array_equal(again, first[::-1])
