"""The pipeline's store bookkeeping: offset marks ride with every store call, transactions
decided while the store is away are applied later, in order, marks included, and a store
silent past the call's bound is an outage."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt
import pytest

from fraudstream.features.batch import TransactionBatch
from fraudstream.features.exceptions import FeatureStoreTimeout, FeatureStoreUnavailable
from fraudstream.features.memory_store import MemoryStore
from fraudstream.features.store import DEFAULT_TOPIC
from fraudstream.stream.pipeline import Pipeline, ScoredBatch
from fraudstream.stream.planner import RUNG_PARTIAL, Plan, Planner

TOPIC = "transactions-under-test"
FULL = Plan(size=0, rung=None, store_timeout_s=1.0)


class SwitchableStore(MemoryStore):
    """The in-process store behind a switch: ``down`` makes every call fail as Redis would."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.slow = False
        self.slow_calls = 0
        """Calls still to time out (after applying), then answers in time."""
        self.calls: list[tuple[list[str], dict[int, int]]] = []

    def apply_flagged(
        self,
        batch: TransactionBatch,
        timeout_s: float | None = None,
        *,
        offsets: Mapping[int, int] | None = None,
        topic: str = DEFAULT_TOPIC,
        watermark_s: npt.ArrayLike | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        if self.down:
            raise FeatureStoreUnavailable("switched off")
        self.calls.append((list(batch.transaction_id), dict(offsets or {})))
        out = super().apply_flagged(
            batch, timeout_s, offsets=offsets, topic=topic, watermark_s=watermark_s
        )
        if self.slow or self.slow_calls > 0:  # applied, but the reply came after the bound
            self.slow_calls -= 1
            raise FeatureStoreTimeout("no reply in time")
        return out


def _batch(*ids: str) -> TransactionBatch:
    n = len(ids)
    return TransactionBatch.from_columns(
        list(ids),
        ["c1"] * n,
        ["t1"] * n,
        1_525_000_000_000 + 1000 * np.arange(n, dtype=np.int64),
        np.full(n, 10.0),
    )


@pytest.fixture
def store() -> SwitchableStore:
    return SwitchableStore()


@pytest.fixture
def pipeline(store: SwitchableStore) -> Pipeline:
    clock = iter(float(i) for i in range(1_000_000))
    return Pipeline(
        store=store,
        model=lambda: None,
        planner=Planner(64),
        marks_topic=TOPIC,
        perf=lambda: next(clock),
    )


def test_marks_are_recorded_with_the_batch(pipeline: Pipeline, store: SwitchableStore) -> None:
    pipeline.run(_batch("a", "b"), FULL, {0: 12, 3: 5})
    assert store.calls == [(["a", "b"], {0: 12, 3: 5})]
    assert store.applied_offsets(TOPIC) == {0: 12, 3: 5}


def test_no_marks_without_a_marks_topic(store: SwitchableStore) -> None:
    pipeline = Pipeline(store=store, model=lambda: None, planner=Planner(64))
    pipeline.run(_batch("a"), FULL, {0: 12})
    pipeline.mark({0: 20})
    assert store.applied_offsets(TOPIC) == {}


def test_batches_decided_while_the_store_is_away_are_applied_in_order_with_their_marks(
    pipeline: Pipeline, store: SwitchableStore
) -> None:
    store.down = True
    pipeline.run(_batch("a"), FULL, {0: 1})
    pipeline.mark({0: 3})  # a batch of dead letters only: queued behind "a"
    pipeline.run(_batch("b"), Plan(0, RUNG_PARTIAL, 0.0), {0: 4, 1: 9})
    assert store.applied_offsets(TOPIC) == {}
    assert pipeline.pending_count == 2

    store.down = False
    assert pipeline.flush_pending()
    assert store.calls == [(["a", "b"], {0: 4, 1: 9})]
    assert store.applied_offsets(TOPIC) == {0: 4, 1: 9}
    assert pipeline.pending_count == 0

    pipeline.run(_batch("c"), FULL, {0: 5})
    assert store.calls[-1] == (["c"], {0: 5})


def test_dead_letter_only_marks_wait_for_pending_transactions(
    pipeline: Pipeline, store: SwitchableStore
) -> None:
    store.down = True
    pipeline.run(_batch("a"), FULL, {0: 1})
    pipeline.mark({0: 2})
    assert store.applied_offsets(TOPIC) == {}  # "a" is not in the store: no mark may pass it
    store.down = False
    assert pipeline.flush_pending()
    assert store.applied_offsets(TOPIC) == {0: 2}


def test_a_reply_slower_than_the_outage_bound_is_an_outage(
    pipeline: Pipeline, store: SwitchableStore
) -> None:
    backs: list[int] = []
    pipeline.on_store_back = lambda: backs.append(1)
    store.slow = True
    assert _blind(pipeline.run(_batch("a"), FULL, {0: 1}))
    store.slow = False
    # the test clock moves 1 s a call, past the first backoff (50 ms): the store is asked
    # again, answers, and the outage ends
    assert not _blind(pipeline.run(_batch("b"), FULL, {0: 2}))
    assert pipeline.pending_count == 0
    assert backs == [1]


def test_one_timeout_is_asked_again_and_decided_with_features_applied_once(
    pipeline: Pipeline, store: SwitchableStore
) -> None:
    backs: list[int] = []
    pipeline.on_store_back = lambda: backs.append(1)
    store.slow_calls = 1  # a costly batch: applied by the server, answered past the bound
    scored = pipeline.run(_batch("a", "b"), FULL, {0: 1})
    assert not _blind(scored)
    assert [ids for ids, _ in store.calls] == [["a", "b"], ["a", "b"]]
    assert backs == [] and pipeline.pending_count == 0  # never taken for an outage
    assert scored.features[:, 3].tolist() == [1, 2]  # customer_nb_tx_1d: a, then a and b
    after = pipeline.run(_batch("a", "b", "c"), FULL, {0: 2})
    assert after.features[:, 3].tolist() == [1, 2, 3]  # the second ask applied nothing again
    assert pipeline.planner.store_cap() < pipeline.planner.max_batch  # and smaller batches


def _blind(scored: ScoredBatch) -> bool:
    """True when the batch was decided without the store's features."""
    return bool(np.isnan(scored.features[:, 3:]).all())
