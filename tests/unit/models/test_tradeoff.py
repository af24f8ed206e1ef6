from __future__ import annotations

from pathlib import Path

import pytest

from fraudstream.models.tradeoff import TradeoffRow, choose_truncation, markdown, plot, report


def row(trees: int, ap: float) -> TradeoffRow:
    timing = {"cpu": {1: 0.1 * trees, 64: 0.2 * trees}}
    return TradeoffRow(trees, trees / 100, ap, 0.9, timing)


def test_smallest_truncation_within_two_percent_of_full_ap() -> None:
    rows = [row(10, 0.70), row(25, 0.785), row(50, 0.79), row(100, 0.80)]
    assert choose_truncation(rows) == (25, True)  # 0.785 >= 0.98 * 0.80 = 0.784
    assert choose_truncation([row(10, 0.783), row(100, 0.80)]) == (10, False)


def test_no_level_within_tolerance_records_the_largest_truncated_and_says_so() -> None:
    result = report("v0007", [row(10, 0.5), row(50, 0.7), row(100, 0.8)], [])
    assert (result.chosen_trees, result.within_tolerance) == (50, False)
    assert "no truncated level kept average precision within 2%" in result.notes[0]
    text = markdown(result)
    assert "| 50 (chosen) | 50% | 0.7000 | -12.5% | 0.9000 | 5.000 | 10.000 |" in text


def test_plot_writes_a_png(tmp_path: Path) -> None:
    result = report("v0001", [row(10, 0.79), row(100, 0.8)], ["cuda not measured"])
    plot(result, tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    assert not list(tmp_path.glob(".*tmp"))


@pytest.mark.parametrize("ap", [0.784, 0.79])
def test_boundary_is_inclusive(ap: float) -> None:
    assert choose_truncation([row(10, ap), row(100, 0.8)]) == (10, True)
