"""A batch as the Redis store's script calls (``fraudstream.features.redis_scripts``): its numbers,
a
single server's calls (chunks, the offsets marks with the last) and the rows replied."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fraudstream.features.batch import TransactionBatch
from fraudstream.features.definitions import FeatureConfig, FloatArray, IntArray, seconds
from fraudstream.features.redis_calls import Call, Script
from fraudstream.features.redis_scripts import rows_keys
from fraudstream.features.store import features_from_raw, raw_width, watermark_flags


@dataclass(frozen=True)
class Head:
    """What the ARGV of every transaction script starts with."""

    header: list[int]
    """ncw, ntw, delay_s, c_keep_s, t_keep_s, refresh_s, c_ttl_ms, t_ttl_ms, c_cap, t_cap."""
    windows: list[int]
    """Customer windows, then terminal windows, in seconds."""

    def argv(self, n: int, offsets: Mapping[int, int], guard: int) -> list[Any]:
        """ARGV up to the numbers: n, the header, the marks, ``guard``."""
        out: list[Any] = [n, *self.header, len(offsets), guard, *self.windows]
        for partition, offset in offsets.items():
            out += [int(partition), int(offset)]
        return out


def numbers_of(batch: TransactionBatch, wm: FloatArray) -> np.ndarray:
    """(second, amount, ms, watermark second or NaN) per transaction, little-endian
    doubles."""
    numbers = np.empty((len(batch), 4), dtype="<f8")
    numbers[:, 0] = seconds(batch.event_time_ms)
    numbers[:, 1] = batch.amount
    numbers[:, 2] = batch.event_time_ms
    numbers[:, 3] = wm
    return numbers


def offsets_key(prefix: str, topic: str) -> str:
    return f"{prefix}:{{o:{topic}}}:offsets"


def single_calls(
    script: Script,
    prefix: str,
    head: Head,
    batch: TransactionBatch,
    numbers: np.ndarray,
    fps: bytes,
    offsets: Mapping[int, int],
    topic: str,
    chunk: int,
) -> list[Call]:
    """``APPLY_TRANSACTIONS`` calls of at most ``chunk`` transactions, in order; the last
    raises the marks, guarded when there are several (see the script)."""
    n = len(batch)
    bounds = [(lo, min(lo + chunk, n)) for lo in range(0, n, chunk)] or [(0, 0)]
    guard_key = ""
    if offsets and len(bounds) > 1:
        guard_key = f"{prefix}:{{o:{topic}}}:guard:{uuid.uuid4().hex}"
    calls: list[Call] = []
    for c, (lo, hi) in enumerate(bounds):
        last = c == len(bounds) - 1
        guard = 0 if not guard_key else (len(bounds) - 1 if last else -1)
        marks = offsets if last else {}
        keys = _keys(prefix, batch, numbers, lo, hi)
        if marks:
            keys.append(offsets_key(prefix, topic))
        if guard_key:
            keys.append(guard_key)
        args = head.argv(hi - lo, marks, guard)
        args += [numbers[lo:hi].tobytes(), fps[8 * lo : 8 * hi], *batch.transaction_id[lo:hi]]
        calls.append((script, keys, args))
    return calls


def answers(
    rows: Sequence[bytes], batch: TransactionBatch, wm: FloatArray, config: FeatureConfig
) -> tuple[FloatArray, IntArray]:
    """Feature vectors and flags from the rows a store script returned (raw doubles, then
    flags), with the batch's watermark flags; an empty batch's when there are no rows."""
    if not rows:
        return np.empty((0, config.n_features), dtype=np.float64), np.zeros(0, dtype=np.int64)
    raw = parse_rows(rows, raw_width(config) + 1)
    flags = raw[:, -1].astype(np.int64) | watermark_flags(batch, wm, config)
    return features_from_raw(raw[:, :-1], config), flags


def parse_rows(reply: Sequence[bytes], width: int) -> FloatArray:
    flat = np.frombuffer(b"".join(reply), dtype="<f8").astype(np.float64)
    return flat.reshape(len(reply), width)


def _keys(prefix: str, batch: TransactionBatch, numbers: np.ndarray, lo: int, hi: int) -> list[str]:
    """KEYS of rows [lo, hi): customer rows hash and history, terminal history, identity."""
    p = prefix
    ids = batch.transaction_id[lo:hi]
    customers, terminals = batch.customer_id[lo:hi], batch.terminal_id[lo:hi]
    rows = rows_keys(p, customers, numbers[lo:hi, 0])
    return [
        key
        for kr, cust, term, tx in zip(rows, customers, terminals, ids, strict=True)
        for key in (
            kr,
            f"{p}:{{c:{cust}}}:h",
            f"{p}:{{t:{term}}}:w",
            f"{p}:{{x:{tx}}}",
        )
    ]
