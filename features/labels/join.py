"""The KPI join as pure functions: a transaction's state (its decision and its label, in
whichever order they come) and the change each new side makes to its hour's statistics.

The first decision and the first label of a transaction win; repeats change nothing, so the
at-least-once streams feeding the join never double-count. An hour's statistics carry the
offset of the last join-topic record counted in them (``MARK``), so a record redelivered
after a crash between the two table writes is not counted twice either.
"""

from __future__ import annotations

from fraudstream.features.labels.records import JoinRecord

TxState = list[float]
"""[decision code or -1, amount, fraud 1/0 or -1]: what is known of one transaction."""
HourStats = list[float]
"""Per hour and join partition; see the index constants below."""

MARK = 0
"""Offset of the last join record counted (in the hour's own partition)."""
DECIDED = 1
"""DECIDED + code: decisions by outcome (approve, review, decline)."""
LABELLED = 4
"""Labels received (fraud or not)."""
FRAUDS = 5
"""FRAUDS + code: confirmed frauds by decision; FRAUDS + 3: frauds without a decision yet."""
UNDECIDED = FRAUDS + 3
AMOUNTS = 9
"""AMOUNTS + code: amount of confirmed frauds by decision."""
WIDTH = 12

Delta = dict[int, float]
"""Index -> increment of an hour's statistics."""


def empty_stats() -> HourStats:
    return [-1.0] + [0.0] * (WIDTH - 1)


def transition(state: TxState | None, record: JoinRecord) -> tuple[TxState, Delta]:
    """The transaction's new state and its hour's increments (empty for a repeat)."""
    decision, amount, fraud = state if state is not None else (-1, 0.0, -1)
    d, f = int(decision), int(fraud)
    if record.is_label:
        if f >= 0:
            return [d, amount, f], {}
        delta: Delta = {LABELLED: 1}
        if record.is_fraud:
            delta.update(_fraud_delta(d, amount))
        return [d, amount, record.is_fraud], delta
    if d >= 0:
        return [d, amount, f], {}
    delta = {DECIDED + record.decision: 1}
    if f == 1:
        delta[UNDECIDED] = -1
        delta.update(_fraud_delta(record.decision, record.amount))
    return [record.decision, record.amount, f], delta


def merge(known: TxState | None, other: TxState) -> TxState:
    """One transaction's state from two records of it, whatever their order: each side is
    the first one known (``known``'s, when both have it)."""
    if known is None:
        return list(other)
    decision, amount = (known[0], known[1]) if known[0] >= 0 else (other[0], other[1])
    fraud = known[2] if known[2] >= 0 else other[2]
    return [decision, amount, fraud]


def _fraud_delta(decision: int, amount: float) -> Delta:
    if decision < 0:
        return {UNDECIDED: 1}
    return {FRAUDS + decision: 1, AMOUNTS + decision: amount}


def add(stats: HourStats | None, delta: Delta, offset: int) -> HourStats | None:
    """``stats`` plus ``delta``, marked with ``offset``; None when ``offset`` was counted."""
    current = list(stats) if stats is not None else empty_stats()
    if offset <= current[MARK]:
        return None
    for index, step in delta.items():
        current[index] += step
    current[MARK] = offset
    return current
