"""An in-process ``FeatureStore`` with the Redis store's exact semantics (tests, replays,
single-process backtests). Not shared between processes; history is trimmed the same way.
"""

from __future__ import annotations

import math
from bisect import bisect_right, insort
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from features.batch import TransactionBatch
from features.definitions import FeatureConfig, FloatArray, seconds
from features.schema import Label
from features.store import DEFAULT_TOPIC, SLACK_S, features_from_raw, raw_width


@dataclass
class _Customer:
    secs: list[int] = field(default_factory=list)
    amounts: list[float] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    results: dict[str, list[float]] = field(default_factory=dict)


@dataclass
class _Terminal:
    secs: list[int] = field(default_factory=list)
    fraud_secs: list[int] = field(default_factory=list)
    labels: dict[str, int] = field(default_factory=dict)


class MemoryStore:
    """Dictionaries of sorted per-entity histories; one Python loop step per transaction."""

    def __init__(self, config: FeatureConfig | None = None) -> None:
        self.config = config or FeatureConfig()
        self._customers: dict[str, _Customer] = {}
        self._terminals: dict[str, _Terminal] = {}
        self._offsets: dict[str, dict[int, int]] = {}
        self._c_keep = max(self.config.customer_windows_s) + SLACK_S
        self._t_keep = self.config.delay_s + max(self.config.terminal_windows_s) + SLACK_S

    def apply(
        self,
        batch: TransactionBatch,
        timeout_s: float | None = None,
        *,
        offsets: Mapping[int, int] | None = None,
        topic: str = DEFAULT_TOPIC,
    ) -> FloatArray:
        """See ``FeatureStore.apply``; ``timeout_s`` is accepted and unused."""
        secs = seconds(batch.event_time_ms).tolist()
        raw = np.empty((len(batch), raw_width(self.config)), dtype=np.float64)
        for i in range(len(batch)):
            raw[i] = self._apply_one(
                batch.transaction_id[i],
                batch.customer_id[i],
                batch.terminal_id[i],
                secs[i],
                int(batch.event_time_ms[i]),
                float(batch.amount[i]),
            )
        if offsets:
            marks = self._offsets.setdefault(topic, {})
            for partition, offset in offsets.items():
                marks[partition] = max(marks.get(partition, offset), offset)
        return features_from_raw(raw, self.config)

    def apply_labels(self, labels: Sequence[Label]) -> int:
        """See ``FeatureStore.apply_labels``: the first label of a transaction wins."""
        new = 0
        for label in labels:
            term = self._terminals.setdefault(label.terminal_id, _Terminal())
            if label.transaction_id in term.labels:
                continue
            sec = label.event_time_ms // 1000
            term.labels[label.transaction_id] = sec
            new += 1
            if label.is_fraud:
                insort(term.fraud_secs, sec)
            self._trim_labels(term, sec - self._t_keep)
        return new

    def applied_offsets(self, topic: str = DEFAULT_TOPIC) -> dict[int, int]:
        return dict(self._offsets.get(topic, {}))

    def close(self) -> None:
        """Nothing to release."""

    def _apply_one(
        self, tx_id: str, customer: str, terminal: str, sec: int, ms: int, amount: float
    ) -> list[float]:
        cust = self._customers.setdefault(customer, _Customer())
        if tx_id in cust.results:
            return cust.results[tx_id]
        at = bisect_right(cust.secs, sec)
        cust.secs.insert(at, sec)
        cust.amounts.insert(at, amount)
        cust.ids.insert(at, tx_id)
        row: list[float] = [float(ms), amount]
        for w in self.config.customer_windows_s:
            lo = bisect_right(cust.secs, sec - w)
            row += [at + 1 - lo, math.fsum(cust.amounts[lo : at + 1])]
        row += self._terminal_part(terminal, sec)
        cust.results[tx_id] = row
        self._trim_customer(cust, sec - self._c_keep)
        return row

    def _terminal_part(self, terminal: str, sec: int) -> list[float]:
        term = self._terminals.setdefault(terminal, _Terminal())
        insort(term.secs, sec)
        hi = sec - self.config.delay_s
        out: list[float] = []
        for w in self.config.terminal_windows_s:
            count = bisect_right(term.secs, hi) - bisect_right(term.secs, hi - w)
            frauds = bisect_right(term.fraud_secs, hi) - bisect_right(term.fraud_secs, hi - w)
            out += [count, frauds]
        del term.secs[: bisect_right(term.secs, sec - self._t_keep)]
        return out

    @staticmethod
    def _trim_customer(cust: _Customer, cut: int) -> None:
        n = bisect_right(cust.secs, cut)
        if n:
            for tx_id in cust.ids[:n]:
                cust.results.pop(tx_id, None)
            del cust.secs[:n], cust.amounts[:n], cust.ids[:n]

    @staticmethod
    def _trim_labels(term: _Terminal, cut: int) -> None:
        del term.fraud_secs[: bisect_right(term.fraud_secs, cut)]
        if len(term.labels) > 64 and min(term.labels.values()) <= cut:
            term.labels = {k: s for k, s in term.labels.items() if s > cut}
