"""An in-process ``FeatureStore`` with the Redis store's exact semantics (tests, replays,
single-process backtests). Not shared between processes; what it keeps and flags is
``fraudstream.features.store``'s rule, the same as Redis's.
"""

from __future__ import annotations

from bisect import bisect_right, insort
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from fraudstream.features.batch import TransactionBatch
from fraudstream.features.definitions import FeatureConfig, FloatArray, IntArray, seconds
from fraudstream.features.memory_history import History, Step, customer_windows, forget_rows
from fraudstream.features.schema import Label
from fraudstream.features.store import (
    DEFAULT_TOPIC,
    FLAG_CONFLICT,
    MAX_CUSTOMER_RECORDS,
    MAX_TERMINAL_RECORDS,
    ROWS_PERIOD_S,
    check_caps,
    features_from_raw,
    fingerprints,
    keeps,
    raw_width,
    watermark_flags,
    watermarks,
)

Row = tuple[list[float], int]
"""A stored answer: the raw row (see ``fraudstream.features.store.raw_width``) and its flags."""


@dataclass
class _Customer:
    hist: History = field(default_factory=lambda: History(amounts=[]))
    rows: dict[int, dict[str, Row]] = field(default_factory=dict)
    """Period of event time -> tx id -> the answer it got."""


@dataclass
class _Terminal:
    hist: History = field(default_factory=History)
    fraud_secs: list[int] = field(default_factory=list)
    labels: dict[str, int] = field(default_factory=dict)
    """Labelled tx id -> its event second (the first label wins)."""
    label_secs: list[tuple[int, str]] = field(default_factory=list)
    """(second, tx id) of ``labels``, sorted, to forget them by time."""


@dataclass(frozen=True)
class _Tx:
    """One row of a batch, as the per-row steps take it."""

    tx_id: str
    customer: str
    terminal: str
    sec: int
    ms: int
    amount: float
    wm: float


class MemoryStore:
    """Dictionaries of sorted per-entity histories; one Python loop step per transaction."""

    def __init__(
        self,
        config: FeatureConfig | None = None,
        *,
        max_customer_records: int = MAX_CUSTOMER_RECORDS,
        max_terminal_records: int = MAX_TERMINAL_RECORDS,
    ) -> None:
        check_caps(max_customer_records, max_terminal_records)
        self.config = config or FeatureConfig()
        self._customers: dict[str, _Customer] = {}
        self._terminals: dict[str, _Terminal] = {}
        self._ids: dict[str, bytes] = {}
        self._offsets: dict[str, dict[int, int]] = {}
        self._c_keep, self._t_keep = keeps(self.config)
        self._c_cap, self._t_cap = max_customer_records, max_terminal_records
        self._c_reach = max(self.config.customer_windows_s)
        self._t_reach = self.config.delay_s + max(self.config.terminal_windows_s)

    def apply(
        self,
        batch: TransactionBatch,
        timeout_s: float | None = None,
        *,
        offsets: Mapping[int, int] | None = None,
        topic: str = DEFAULT_TOPIC,
    ) -> FloatArray:
        """See ``FeatureStore.apply``; ``timeout_s`` is accepted and unused."""
        return self.apply_flagged(batch, timeout_s, offsets=offsets, topic=topic)[0]

    def apply_flagged(
        self,
        batch: TransactionBatch,
        timeout_s: float | None = None,
        *,
        offsets: Mapping[int, int] | None = None,
        topic: str = DEFAULT_TOPIC,
        watermark_s: npt.ArrayLike | None = None,
    ) -> tuple[FloatArray, IntArray]:
        """See ``FeatureStore.apply_flagged``; ``timeout_s`` is accepted and unused."""
        secs = seconds(batch.event_time_ms).tolist()
        wm = watermarks(batch, watermark_s)
        fps = fingerprints(batch)
        raw = np.empty((len(batch), raw_width(self.config)), dtype=np.float64)
        flags = watermark_flags(batch, wm, self.config)
        for i in range(len(batch)):
            tx = _Tx(
                batch.transaction_id[i],
                batch.customer_id[i],
                batch.terminal_id[i],
                secs[i],
                int(batch.event_time_ms[i]),
                float(batch.amount[i]),
                float(wm[i]),
            )
            row, flag = self._apply_one(tx, fps[8 * i : 8 * i + 8])
            raw[i] = row
            flags[i] |= flag
        if offsets:
            marks = self._offsets.setdefault(topic, {})
            for partition, offset in offsets.items():
                marks[partition] = max(marks.get(partition, offset), offset)
        return features_from_raw(raw, self.config), flags

    def apply_labels(self, labels: Sequence[Label]) -> int:
        """See ``FeatureStore.apply_labels``: the first label of a transaction wins; labels
        are forgotten once their terminal's history is trimmed past them."""
        new = 0
        touched: dict[str, _Terminal] = {}
        for label in labels:
            term = self._terminals.setdefault(label.terminal_id, _Terminal())
            touched[label.terminal_id] = term
            if label.transaction_id in term.labels:
                continue
            sec = label.event_time_ms // 1000
            term.labels[label.transaction_id] = sec
            insort(term.label_secs, (sec, label.transaction_id))
            new += 1
            if label.is_fraud:
                insort(term.fraud_secs, sec)
        for term in touched.values():
            _forget_labels(term)
        return new

    def applied_offsets(self, topic: str = DEFAULT_TOPIC) -> dict[int, int]:
        return dict(self._offsets.get(topic, {}))

    def close(self) -> None:
        """Nothing to release."""

    def _apply_one(self, tx: _Tx, fp: bytes) -> Row:
        first = self._ids.setdefault(tx.tx_id, fp)
        cust = self._customers.setdefault(tx.customer, _Customer())
        term = self._terminals.setdefault(tx.terminal, _Terminal())
        if first != fp:
            row, flags = self._row(tx, cust, term, apply=False)
            return row, flags | FLAG_CONFLICT
        period = tx.sec // ROWS_PERIOD_S
        known = cust.rows.get(period, {}).get(tx.tx_id)
        if known is not None:
            return known
        answer = self._row(tx, cust, term, apply=True)
        cust.rows.setdefault(period, {})[tx.tx_id] = answer
        return answer

    def _row(self, tx: _Tx, cust: _Customer, term: _Terminal, apply: bool) -> Row:
        step = cust.hist.plan(tx.sec, tx.wm, self._c_keep, self._c_cap, insert=apply)
        if apply:
            forget_rows(cust.rows, cust.hist, step, tx.sec)
            cust.hist.commit(step, tx.sec, tx.amount)
        row: list[float] = [float(tx.ms), tx.amount]
        row += customer_windows(cust.hist, step, tx.sec, tx.amount, self.config.customer_windows_s)
        flags = step.flags(tx.sec - self._c_reach)
        t_step = term.hist.plan(tx.sec, tx.wm, self._t_keep, self._t_cap, insert=apply)
        if apply:
            term.hist.commit(t_step, tx.sec)
        row += self._terminal_counts(term, t_step, tx.sec)
        flags |= t_step.flags(tx.sec - self._t_reach)
        return row, flags

    def _terminal_counts(self, term: _Terminal, step: Step, sec: int) -> list[float]:
        """(count, frauds) per window, then the widest window's fraud ages."""
        hi = sec - self.config.delay_s
        out: list[float] = []
        frauds = term.fraud_secs
        top = bisect_right(frauds, hi)
        low = top
        for w in self.config.terminal_windows_s:
            lower = max(hi - w, step.through)
            low = bisect_right(frauds, lower, 0, top)
            out += [term.hist.window_count(lower, hi), top - low]
        if low == top:
            return [*out, -1.0, -1.0]
        return [*out, float(hi - frauds[low]), float(hi - frauds[top - 1])]


def _forget_labels(term: _Terminal) -> None:
    through = term.hist.through
    n = bisect_right(term.label_secs, (through, "\U0010ffff"))
    for _, tx_id in term.label_secs[:n]:
        del term.labels[tx_id]
    del term.label_secs[:n]
    del term.fraud_secs[: bisect_right(term.fraud_secs, through)]
