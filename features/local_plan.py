"""A batch as ``fraudstream.features.local_store`` computes it before Redis sees it: the
customer's half of every transaction from the histories the process holds (changed as
applying them does), what is answered at once (a redelivery the process knows, a copy of
an earlier row of the batch), and what goes to Redis."""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from fraudstream.features.batch import TransactionBatch
from fraudstream.features.customer_log import CustomerState, Rules, entry_head
from fraudstream.features.definitions import seconds
from fraudstream.features.store import ROWS_PERIOD_S

APPLY, CONFLICT = 0, 2
"""What the process expects of a transaction's claim: new or again (apply), or a conflict
(read-only), as the store scripts' status bytes."""
_NONE: dict[str, bytes] = {}


@dataclass
class BatchPlan:
    """A batch as this process computed it, before the store call."""

    answers: list[bytes | None]
    """Row bytes per transaction, None where the store's answer is awaited."""
    sent: list[int] = field(default_factory=list)
    """Batch index of each transaction sent to Redis, in order."""
    expect: bytearray = field(default_factory=bytearray)
    """Per sent transaction, ``APPLY`` or ``CONFLICT``."""
    parts: list[bytes] = field(default_factory=list)
    """Per sent transaction, its customer's half: ms, amount, (count, sum) per window,
    amount history, flags, as little-endian doubles."""
    renew: bytearray = field(default_factory=bytearray)
    """Per sent transaction, 1 to renew its customer's log's TTL."""
    heads: list[bytes] = field(default_factory=list)
    """Per sent transaction, its log entry up to the row (empty: read-only)."""
    checks: dict[str, int] = field(default_factory=dict)
    """Customer -> the log length its half was computed from."""
    copies: list[tuple[int, int]] = field(default_factory=list)
    """(i, j): transaction i is a redelivery of j in this batch, answered with j's row."""


@dataclass(frozen=True)
class Planner:
    """Plans batches over the customers a process holds."""

    rules: Rules
    renew_s: int
    """Event time after which a log's TTL is renewed again (``TTL_REFRESH_S``)."""
    parts: struct.Struct
    """A customer's half as the scripts take it."""

    def plan(
        self,
        held: Mapping[str, CustomerState],
        batch: TransactionBatch,
        numbers: np.ndarray,
        fps: bytes,
        conflicts: set[int],
    ) -> BatchPlan:
        """Every transaction of ``batch`` (``conflicts``: rows known to be conflicts)."""
        plan = BatchPlan(answers=[None] * len(batch))
        pending: dict[str, tuple[int, bytes]] = {}
        secs = seconds(batch.event_time_ms).tolist()
        amounts, ms_, wms = (numbers[:, k].tolist() for k in (1, 2, 3))
        rules, pack = self.rules, self.parts.pack
        checks, parts, sent, expect = plan.checks, plan.parts, plan.sent, plan.expect
        for i, (tx_id, customer) in enumerate(
            zip(batch.transaction_id, batch.customer_id, strict=True)
        ):
            fp, sec = fps[8 * i : 8 * i + 8], secs[i]
            state = held[customer]
            known = state.rows.get(sec // ROWS_PERIOD_S, _NONE).get(tx_id)
            earlier = pending.get(tx_id)
            if known is not None:
                apply = known[:8] == fp and i not in conflicts
                if apply:
                    plan.answers[i] = known[8:]
                    continue
            elif earlier is not None:
                apply = earlier[1] == fp and i not in conflicts
                if apply:
                    plan.copies.append((i, earlier[0]))
                    continue
            else:
                apply = i not in conflicts
            if customer not in checks:
                checks[customer] = state.length
            values, flags = state.half(rules, sec, wms[i], amounts[i], apply)
            parts.append(pack(ms_[i], amounts[i], *values, flags))
            sent.append(i)
            if apply:
                expect.append(APPLY)
                plan.renew.append(self._renews(state, sec))
                pending[tx_id] = (i, fp)
                plan.heads.append(entry_head(sec, wms[i], amounts[i], fp, tx_id, rules))
            else:
                expect.append(CONFLICT)
                plan.renew.append(0)
                plan.heads.append(b"")
        return plan

    def _renews(self, state: CustomerState, sec: int) -> int:
        """1 when this append is to renew the log's TTL: the first by this process, or
        event time moved a renewal period on."""
        last = state.renewed
        if last is None or sec - last >= self.renew_s or last - sec > self.rules.keep:
            state.renewed = sec
            return 1
        return 0
