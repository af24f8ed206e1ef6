"""A customer's log (``fraudstream.features.customer_log``): replaying its entries gives the
state that applying them gave, a snapshot reads back as the state it holds, and a log
that is not one is refused with where and why."""

from __future__ import annotations

import math
import struct

import pytest

from fraudstream.features.customer_log import (
    CustomerState,
    LogError,
    Rules,
    entry_head,
    replay,
)
from fraudstream.features.definitions import DAY_S

RULES = Rules(
    keep=31 * DAY_S, cap=64, windows=(DAY_S, 7 * DAY_S, 30 * DAY_S), reach=30 * DAY_S, row_size=24
)
NAN = math.nan


def _log(records: list[tuple[str, int, float, float]]) -> tuple[bytes, CustomerState]:
    """The log of ``records`` (tx id, second, watermark, amount) and the state that
    applying them, in order, left; each row is three doubles naming its record."""
    state, log = CustomerState(), b""
    for k, (tx, sec, wm, amount) in enumerate(records):
        state.half(RULES, sec, wm, amount, apply=True)
        fp = struct.pack("<q", k)
        row = struct.pack("<3d", k, sec, amount)
        state.store(tx, sec, fp + row)
        log += entry_head(sec, wm, amount, fp, tx, RULES) + row
    return log, state


def _records(n: int, step_s: int) -> list[tuple[str, int, float, float]]:
    out = [(f"x{i}", 1_000_000 + i * step_s, NAN, 10.0 + i % 7) for i in range(n)]
    out[5], out[6] = out[6], out[5]  # one out of order
    return out


def test_replaying_the_entries_gives_the_state_applying_them_gave() -> None:
    log, state = _log(_records(300, step_s=20_000))  # 69 days: trimmed and capped
    back = replay(log, RULES)
    assert back.hist == state.hist
    assert back.rows == state.rows
    assert (back.entries, back.length) == (300, len(log))


def test_a_snapshot_then_more_entries_read_back_as_the_state() -> None:
    records = _records(200, step_s=30_000)
    log, state = _log(records[:150])
    snap = state.snapshot()
    more, _ = _log(records)  # the same state machine carried on
    tail = more[len(log) :]
    back = replay(snap + tail, RULES)
    _, whole = _log(records)
    assert back.hist == whole.hist
    assert back.rows == whole.rows
    assert back.entries == 1 + 50


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x01\x00", "cut short"),
        (b"\x09\x00\x00\x00A123", "says 9 bytes, 4 follow"),
        (b"\x02\x00\x00\x00Zz", "unknown kind b'Z'"),
        (b"\x02\x00\x00\x00Az", "malformed"),
    ],
)
def test_a_log_that_is_not_one_is_refused_with_where(data: bytes, message: str) -> None:
    with pytest.raises(LogError, match=message):
        replay(data, RULES)


def test_an_entry_with_a_row_of_another_width_is_refused() -> None:
    log, _ = _log(_records(10, step_s=60))
    wider = Rules(RULES.keep, RULES.cap, RULES.windows, RULES.reach, row_size=32)
    with pytest.raises(LogError, match="24-byte row, expected 32"):
        replay(log, wider)
