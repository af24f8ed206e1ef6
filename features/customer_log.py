"""One customer's state as the process that scores it holds it
(``fraudstream.features.local_store``), and its log in Redis, the durable copy.

The log ``P:{c:<customer>}:log`` is a string of entries, each a ``<I`` length, then a
kind byte and its body:

- ``A``, a transaction applied to the customer (appended by ``apply_local.lua``, in the
  same script call that claims its id and adds it to its terminal): ``<ddd`` event second,
  watermark second (NaN: none) and amount, the 8-byte fingerprint, ``<H`` the id's length
  and the id, then the row it got (raw doubles, then flags);
- ``S``, a snapshot (written by ``replace_log.lua`` in place of every entry before it):
  ``<ddI`` trimmed-through and capped-through seconds and the number of records, that many
  ``<dd`` (second, amount) in history order, ``<I`` the number of stored rows, then per row
  ``<q`` its period, the fingerprint, ``<H`` and the id, the row.

Replaying the entries in order gives the holder's state exactly: an ``A`` entry moves the
history as applying it did (``History.plan`` and ``commit`` with the same second,
watermark and amount; the stored answers forgotten by the same rule as the in-process
store's), whichever process wrote it.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field

from fraudstream.features.memory_history import History, customer_windows, forget_rows
from fraudstream.features.store import ROWS_PERIOD_S

_LEN = struct.Struct("<I")
_APPLIED = struct.Struct("<ddd")
_ID_LEN = struct.Struct("<H")
_SNAP_HEAD = struct.Struct("<ddI")
_RECORD = struct.Struct("<dd")
_PERIOD = struct.Struct("<q")
APPLIED, SNAPSHOT = b"A", b"S"


class LogError(ValueError):
    """A customer log that is not in this format (the message says where)."""


@dataclass(frozen=True)
class Rules:
    """What a customer's history keeps and its windows, from the store's configuration."""

    keep: int
    """Seconds kept behind the reference (``fraudstream.features.store.keeps``)."""
    cap: int
    """Most records kept (``max_customer_records``)."""
    windows: tuple[int, ...]
    """The customer windows in seconds."""
    reach: int
    """The widest window: a row is flagged when the history is trimmed past its start."""
    row_size: int
    """Bytes of a stored row: raw doubles, then flags."""


@dataclass
class Stored:
    """A transaction's answer, kept so that a redelivery gets it again."""

    row: bytes
    """Raw doubles, then flags, as the store script packed them."""
    fingerprint: bytes
    """The content it was applied with (``fraudstream.features.store.fingerprints``)."""


@dataclass
class CustomerState:
    """A customer's history, its stored answers, and what this process knows of its log."""

    hist: History = field(default_factory=lambda: History(amounts=[]))
    rows: dict[int, dict[str, Stored]] = field(default_factory=dict)
    """Period of event time -> tx id -> its answer."""
    length: int = 0
    """Bytes of the log as this process last saw or wrote it (its version)."""
    entries: int = 0
    """Entries in that log."""
    renewed: float | None = None
    """Event second at which this process last renewed the log's TTL (None: not yet)."""

    def known(self, tx_id: str, sec: int) -> Stored | None:
        return self.rows.get(sec // ROWS_PERIOD_S, {}).get(tx_id)

    def half(
        self, rules: Rules, sec: int, wm: float, amount: float, apply: bool
    ) -> tuple[list[float], int]:
        """The customer's windows and amount history of a transaction (applied to the
        history when ``apply``, else read-only) and the flags of its trimming."""
        step = self.hist.plan(sec, wm, rules.keep, rules.cap, insert=apply)
        if apply:
            forget_rows(self.rows, self.hist, step, sec)
            self.hist.commit(step, sec, amount)
        values = customer_windows(self.hist, step, sec, amount, rules.windows)
        return values, step.flags(sec - rules.reach)

    def store(self, tx_id: str, sec: int, answer: Stored) -> None:
        self.rows.setdefault(sec // ROWS_PERIOD_S, {})[tx_id] = answer

    def snapshot(self) -> bytes:
        """An ``S`` entry holding this state."""
        hist = self.hist
        amounts = hist.amounts or []
        parts = [SNAPSHOT, _SNAP_HEAD.pack(hist.tt, hist.cc, len(hist.secs))]
        parts += [_RECORD.pack(s, a) for s, a in zip(hist.secs, amounts, strict=True)]
        stored = [(p, i, s) for p, rows in sorted(self.rows.items()) for i, s in rows.items()]
        parts.append(_LEN.pack(len(stored)))
        for period, tx_id, answer in stored:
            raw = tx_id.encode()
            parts += [_PERIOD.pack(period), answer.fingerprint, _ID_LEN.pack(len(raw)), raw]
            parts.append(answer.row)
        body = b"".join(parts)
        return _LEN.pack(len(body)) + body


def entry_head(
    sec: int, wm: float, amount: float, fingerprint: bytes, tx_id: str, rules: Rules
) -> bytes:
    """An ``A`` entry up to its row, which the script appends after it."""
    raw = tx_id.encode()
    body = 1 + _APPLIED.size + 8 + _ID_LEN.size + len(raw) + rules.row_size
    return b"".join(
        (
            _LEN.pack(body),
            APPLIED,
            _APPLIED.pack(sec, wm, amount),
            fingerprint,
            _ID_LEN.pack(len(raw)),
            raw,
        )
    )


def replay(data: bytes, rules: Rules) -> CustomerState:
    """The state a customer's log holds (``LogError`` when it is not one)."""
    state = CustomerState(length=len(data))
    at = 0
    while at < len(data):
        if at + _LEN.size + 1 > len(data):
            msg = f"an entry at byte {at} is cut short"
            raise LogError(msg)
        (size,) = _LEN.unpack_from(data, at)
        body = memoryview(data)[at + _LEN.size : at + _LEN.size + size]
        if len(body) != size or size < 1:
            msg = f"the entry at byte {at} says {size} bytes, {len(body)} follow"
            raise LogError(msg)
        kind = bytes(body[:1])
        try:
            if kind == APPLIED:
                _replay_applied(state, body, rules)
            elif kind == SNAPSHOT:
                state = _restore(body, rules, len(data))
            else:
                msg = f"the entry at byte {at} is of unknown kind {kind!r}"
                raise LogError(msg)
        except (struct.error, UnicodeDecodeError) as exc:
            msg = f"the entry at byte {at} ({kind!r}) is malformed: {exc}"
            raise LogError(msg) from exc
        state.entries += 1
        at += _LEN.size + size
    return state


def _replay_applied(state: CustomerState, body: memoryview, rules: Rules) -> None:
    sec_f, wm, amount = _APPLIED.unpack_from(body, 1)
    at = 1 + _APPLIED.size
    fingerprint = bytes(body[at : at + 8])
    (n,) = _ID_LEN.unpack_from(body, at + 8)
    at += 8 + _ID_LEN.size
    tx_id = bytes(body[at : at + n]).decode()
    row = bytes(body[at + n :])
    if len(row) != rules.row_size or not math.isfinite(sec_f):
        msg = f"transaction {tx_id!r} has a {len(row)}-byte row, expected {rules.row_size}"
        raise LogError(msg)
    sec = int(sec_f)
    state.half(rules, sec, wm, amount, apply=True)
    state.store(tx_id, sec, Stored(row, fingerprint))


def _restore(body: memoryview, rules: Rules, length: int) -> CustomerState:
    tt, cc, n = _SNAP_HEAD.unpack_from(body, 1)
    at = 1 + _SNAP_HEAD.size
    secs, amounts = [], []
    for _ in range(n):
        s, a = _RECORD.unpack_from(body, at)
        secs.append(int(s))
        amounts.append(a)
        at += _RECORD.size
    hist = History(secs=secs, amounts=amounts, tt=tt, cc=cc)
    state = CustomerState(hist=hist, length=length)
    (m,) = _LEN.unpack_from(body, at)
    at += _LEN.size
    for _ in range(m):
        (period,) = _PERIOD.unpack_from(body, at)
        fingerprint = bytes(body[at + 8 : at + 16])
        (k,) = _ID_LEN.unpack_from(body, at + 16)
        at += 16 + _ID_LEN.size
        tx_id = bytes(body[at : at + k]).decode()
        row = bytes(body[at + k : at + k + rules.row_size])
        if len(row) != rules.row_size:
            msg = f"the snapshot's row of {tx_id!r} is cut short"
            raise LogError(msg)
        state.rows.setdefault(period, {})[tx_id] = Stored(row, fingerprint)
        at += k + rules.row_size
    if at != len(body):
        msg = f"the snapshot has {len(body) - at} bytes after its rows"
        raise LogError(msg)
    return state
