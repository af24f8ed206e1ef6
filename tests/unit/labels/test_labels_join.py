"""The KPI join's transitions: either order, first side wins, repeats and replays count once."""

from __future__ import annotations

from fraudstream.features.labels.join import (
    AMOUNTS,
    DECIDED,
    FRAUDS,
    LABELLED,
    MARK,
    UNDECIDED,
    add,
    empty_stats,
    transition,
)
from fraudstream.features.labels.records import JoinRecord

T = 1_522_540_800_000
DECLINE = JoinRecord("tx", T, decision=2, amount=80.5)
APPROVE = JoinRecord("tx", T, decision=0, amount=80.5)
FRAUD = JoinRecord("tx", T, is_fraud=1)
GENUINE = JoinRecord("tx", T, is_fraud=0)


def _run(*records: JoinRecord) -> list[float]:
    state, stats = None, empty_stats()
    for offset, record in enumerate(records):
        state, delta = transition(state, record)
        stats = add(stats, delta, offset) or stats
    return stats


def test_decision_then_fraud_label() -> None:
    stats = _run(DECLINE, FRAUD)
    assert stats[DECIDED + 2] == 1 and stats[LABELLED] == 1
    assert stats[FRAUDS + 2] == 1 and stats[AMOUNTS + 2] == 80.5
    assert stats[UNDECIDED] == 0


def test_fraud_label_then_decision_gives_the_same_statistics() -> None:
    assert _run(FRAUD, DECLINE)[1:] == _run(DECLINE, FRAUD)[1:]
    state, delta = transition(None, FRAUD)
    assert delta == {LABELLED: 1, UNDECIDED: 1}
    assert state == [-1, 0.0, 1]


def test_genuine_label_counts_as_labelled_only() -> None:
    stats = _run(APPROVE, GENUINE)
    assert stats[DECIDED + 0] == 1 and stats[LABELLED] == 1
    assert sum(stats[FRAUDS : FRAUDS + 4]) == 0 and stats[AMOUNTS] == 0


def test_first_decision_and_first_label_win() -> None:
    stats = _run(APPROVE, FRAUD, DECLINE, GENUINE, FRAUD, APPROVE)
    assert stats[DECIDED + 0] == 1 and stats[DECIDED + 2] == 0
    assert stats[LABELLED] == 1 and stats[FRAUDS + 0] == 1 and stats[AMOUNTS + 0] == 80.5


def test_repeat_gives_no_delta() -> None:
    state, _ = transition(None, DECLINE)
    again, delta = transition(state, DECLINE)
    assert delta == {} and again == state


def test_an_offset_already_counted_is_not_counted_again() -> None:
    stats = add(None, {DECIDED: 1}, 7)
    assert stats is not None and stats[MARK] == 7
    assert add(stats, {DECIDED: 1}, 7) is None
    assert add(stats, {DECIDED: 1}, 3) is None
    later = add(stats, {DECIDED: 1}, 8)
    assert later is not None and later[DECIDED] == 2 and later[MARK] == 8
    assert stats[DECIDED] == 1, "add must not modify its input"
