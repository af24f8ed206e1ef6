"""One entity's history in the in-process store: its records sorted by event second, and
how applying a record moves it (insertion, trimming by time, the cap), as
``fraudstream.features.store`` defines it and the Redis scripts implement it."""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import MutableSequence, Sequence
from dataclasses import dataclass, field
from typing import Any

from fraudstream.features.definitions import CENTS_CAP
from fraudstream.features.store import FLAG_CAPPED, FLAG_OUTLIER, ROWS_PERIOD_S, TRIM_STEP

NEG = -math.inf


@dataclass(frozen=True)
class Step:
    """What applying one record does to a history (``History.plan``)."""

    pos: int
    """Where the record goes: after every record at or before its second."""
    added: bool
    """The record is inserted (its second is after what the history trimmed)."""
    tt: float
    """Trimmed-through second after the step (records at or before it are gone)."""
    cc: float
    """Capped-through second after the step (records dropped by the cap are at or before)."""
    first: int
    """Index of the first record kept, counted with the new one inserted at ``pos``."""

    @property
    def through(self) -> float:
        return max(self.tt, self.cc)

    @property
    def kept(self) -> bool:
        """The record is in the history after the step."""
        return self.added and self.pos >= self.first

    def flags(self, reach: float) -> int:
        """Flags of a row whose windows start after second ``reach``."""
        return (FLAG_OUTLIER if self.tt > reach else 0) | (FLAG_CAPPED if self.cc > reach else 0)


@dataclass
class History:
    """Sorted seconds (ties in arrival order), amounts alongside for customers."""

    secs: MutableSequence[int] = field(default_factory=list)
    amounts: MutableSequence[float] | None = None
    """Amounts of the records (customers), None for terminals."""
    tt: float = NEG
    """Trimmed-through second: records at or before it are gone."""
    cc: float = NEG
    """Capped-through second: the newest second the cap dropped records at."""

    @property
    def through(self) -> float:
        return max(self.tt, self.cc)

    def plan(self, sec: int, wm: float, keep: int, cap: int, insert: bool = True) -> Step:
        """What applying a record at ``sec`` with watermark ``wm`` (NaN: none) does."""
        pos = bisect_right(self.secs, sec)
        if not insert:
            return Step(pos, False, self.tt, self.cc, 0)
        added = sec > self.through
        m = len(self.secs) + added

        def post(j: int) -> float:
            if not added or j < pos:
                return self.secs[j]
            return sec if j == pos else self.secs[j - 1]

        def above(x: float) -> int:
            return bisect_right(self.secs, x) + int(added and sec <= x)

        ref = post(m - 2) if m >= 2 else NEG
        if wm < ref:  # False for NaN
            ref = wm
        cut = ref - keep
        tt, cc, first = self.tt, self.cc, 0
        if m >= TRIM_STEP and post(TRIM_STEP - 1) <= cut:
            tt, first = cut, above(cut)
        if m - first > cap:
            cc = max(cc, post(first + TRIM_STEP - 1))
            first = above(max(tt, cc))
        return Step(pos, added, tt, cc, first)

    def commit(self, step: Step, sec: int, amount: float = 0.0) -> None:
        """Apply ``step`` (from ``plan``) for a record at ``sec``."""
        if step.added:
            self.secs.insert(step.pos, sec)
            if self.amounts is not None:
                self.amounts.insert(step.pos, amount)
        if step.first:
            del self.secs[: step.first]
            if self.amounts is not None:
                del self.amounts[: step.first]
        self.tt, self.cc = step.tt, step.cc

    def window_count(self, lower: float, upper: float) -> int:
        """Records with a second in ``(lower, upper]``."""
        top = bisect_right(self.secs, upper)
        return top - bisect_right(self.secs, lower, 0, top)

    def first_period(self, period_s: int) -> int | None:
        """Period of the oldest record, None when empty."""
        return self.secs[0] // period_s if self.secs else None


def customer_windows(
    hist: History, step: Step, sec: int, amount: float, windows_s: tuple[int, ...]
) -> list[float]:
    """(count, sum) per window ``(sec - w, sec]`` after ``step`` was committed (or, for a
    read-only step, as if the record were inserted), the record itself included; then
    ``amount_history`` of the widest window's records before it."""
    out: list[float] = []
    through = step.through
    amounts = hist.amounts or []
    lo = 0
    if step.added and step.kept:
        idx = step.pos - step.first
        for w in windows_s:
            lo = bisect_right(hist.secs, max(sec - w, through), 0, idx)
            out += [idx + 1 - lo, math.fsum(amounts[lo : idx + 1])]
        return out + amount_history(amounts[lo:idx])
    if step.added or sec <= through:  # dropped at once, or before what is trimmed
        return [v for _ in windows_s for v in (1, amount)] + amount_history([])
    for w in windows_s:  # read-only: as if inserted after the records at or before sec
        lo = bisect_right(hist.secs, max(sec - w, through), 0, step.pos)
        out += [step.pos + 1 - lo, math.fsum([*amounts[lo : step.pos], amount])]
    return out + amount_history(amounts[lo : step.pos])


def amount_history(amounts: Sequence[float]) -> list[float]:
    """``fraudstream.features.definitions.AMOUNT_HISTORY_WIDTH`` values of earlier amounts:
    their largest whole cents (-1: none), the cents of the largest amount (whole cents,
    half up and capped, never decrease as the amount grows)."""
    if not amounts:
        return [-1.0]
    return [float(min(math.floor(max(amounts) * 100.0 + 0.5), CENTS_CAP))]


def forget_rows(rows: dict[int, Any], hist: History, step: Step, sec: int) -> None:
    """Forget the stored answers (period of event time -> answers) of the periods that
    ``step``, for a record at ``sec``, trims ``hist`` past (before it is committed)."""
    if step.through <= hist.through or not hist.secs:
        return
    start = hist.secs[0] // ROWS_PERIOD_S
    kept = len(hist.secs) + step.added - step.first
    if kept <= 0:
        end = math.floor(step.through / ROWS_PERIOD_S)
    elif step.added and step.first == step.pos:
        end = sec // ROWS_PERIOD_S
    else:
        j = step.first - int(step.added and step.pos < step.first)
        end = hist.secs[j] // ROWS_PERIOD_S
    for period in [p for p in rows if start <= p < end]:
        del rows[period]
