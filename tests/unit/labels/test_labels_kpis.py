"""Hourly KPIs summed over join partitions: precision, amounts, JSON."""

from __future__ import annotations

from fraudstream.features.labels.join import AMOUNTS, DECIDED, FRAUDS, LABELLED, UNDECIDED, WIDTH
from fraudstream.features.labels.kpis import summarize

H0, H1 = 1_522_540_800, 1_522_544_400


def _stats(**values: float) -> list[float]:
    stats = [0.0] * WIDTH
    for name, value in values.items():
        kind, _, code = name.partition("_")
        base = {"d": DECIDED, "f": FRAUDS, "a": AMOUNTS}.get(kind)
        if base is not None:
            stats[base + int(code)] = value
    stats[LABELLED] = values.get("labels", 0)
    stats[UNDECIDED] = values.get("undecided", 0)
    return stats


def test_partitions_of_one_hour_are_summed() -> None:
    rows = [
        (H0, _stats(d_0=10, d_1=4, d_2=2, f_1=1, f_2=2, a_2=30.0, labels=5)),
        (H0, _stats(d_0=5, d_1=0, d_2=2, f_0=1, a_0=7.5, undecided=1, labels=2)),
        (H1, _stats(d_0=1)),
    ]
    h0, h1 = summarize(rows)
    assert h0.hour == "2018-04-01T00:00:00Z" and h1.hour == "2018-04-01T01:00:00Z"
    assert [h0.decisions(c) for c in range(3)] == [15, 4, 4]
    assert h0.confirmed_frauds == 5
    assert h0.precision(1) == 0.25 and h0.precision(2) == 0.5
    assert h0.caught_amount == 30.0 and h0.missed_amount == 7.5
    doc = h0.to_json()
    assert doc["decisions"] == {"approve": 15, "review": 4, "decline": 4}
    assert doc["confirmed_frauds_by_decision"]["undecided"] == 1
    assert doc["labels"] == 7 and doc["hour_start_ms"] == H0 * 1000
    assert h1.precision(1) is None and h1.to_json()["precision"] == {
        "review": None,
        "decline": None,
    }


def test_last_hours_only() -> None:
    rows = [(H0 + 3600 * i, _stats(d_0=i)) for i in range(5)]
    assert [h.decisions(0) for h in summarize(rows, last=2)] == [3, 4]
    assert summarize(rows, last=0) == []
    assert len(summarize(rows)) == 5
