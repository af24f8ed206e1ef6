"""Customer state held locally (``fraudstream.features.local_store``) on a Redis Cluster:
a batch in three rounds, each one pipelined call per node, as the Redis store's
(``fraudstream.features.redis_cluster``) but with the customers' logs last:

0. the identity claims (``APPLY_IDS``), before the customer's half is computed, so the
   process knows every conflict up front;
1. the terminal half (``APPLY_TERMINALS``) of the transactions sent: each terminal adds a
   transaction once (it keeps the ids it holds), so a round run again counts nothing twice;
2. the log entries (``APPEND_LOGS``), per node holding the customers, each node's only
   when every log on it still has the length this process last saw.

Why it is retry-safe: an entry is appended only once its terminal counts are known, and a
transaction whose entry is in its customer's log is answered from it. A crash, a lost
reply or a failed check after round 0 or 1 leaves the id claimed and the terminal holding
the transaction; the batch (or its redelivery) is computed again from the logs as they
are, the terminals answer without counting again, and round 2 appends what is missing. A
node whose check failed appended nothing; the others' entries are read back with their
logs.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

import numpy as np

from fraudstream.features.batch import TransactionBatch
from fraudstream.features.redis_calls import Script
from fraudstream.features.redis_cluster import ClusterBatches
from fraudstream.features.redis_scripts import REPLACE_LOG
from fraudstream.features.store import FLAG_CONFLICT

_CONFLICT = 2
_FLAGS = struct.Struct("<d")


class ClusterLogs:
    """The rounds of one batch, the logs' reads and their snapshots on a Redis Cluster."""

    def __init__(self, cluster: ClusterBatches, head: list[Any], ntw: int, ttl_ms: int) -> None:
        self.cluster = cluster
        self._head = head
        """ARGV of the transaction scripts before the numbers (``Head.argv`` without n)."""
        self._ntw = ntw
        self._ttl_ms = ttl_ms
        self._replace = Script(REPLACE_LOG)

    def claim(
        self, batch: TransactionBatch, numbers: np.ndarray, fps: bytes, timeout_s: float | None
    ) -> bytes:
        """Round 0: one status byte per transaction (0 new, 1 again, 2 conflict)."""
        return self.cluster.claim(batch, numbers, fps, self._head, timeout_s)

    def apply(
        self,
        sent: TransactionBatch,
        numbers: np.ndarray,
        statuses: bytes,
        parts: Sequence[bytes],
        logs: Sequence[tuple[str, bool, bytes]],
        checks: dict[str, int],
        index: Sequence[int],
        known: dict[int, np.ndarray],
        timeout_s: float | None,
    ) -> bytes | None:
        """Rounds 1 and 2 for the transactions ``sent`` (their numbers, claims, customer
        parts as ``apply_local.lua`` takes them, and per transaction its log key, whether
        to renew its TTL and its entry's head, empty when read-only): their rows, one
        after the other; None when a log's length differed (nothing appended on its
        node). ``known``: row of the batch (``index``: each sent one's) -> the terminal's
        answer of an earlier try of this batch, kept (asked again, a terminal that holds
        the transaction answers read-only, as of now, not as of its application); the new
        ones are added to it."""
        ask = [k for k, i in enumerate(index) if i not in known]
        if ask:
            answers = self.cluster.apply_terminals(
                sent.take(ask),
                numbers[ask],
                self._head,
                bytes(statuses[k] for k in ask),
                self._ntw,
                timeout_s,
            )
            for j, k in enumerate(ask):
                known[index[k]] = answers[j]
        counts = np.asarray([known[i] for i in index])
        rows, entries = [], []
        for k, part in enumerate(parts):
            (flags,) = _FLAGS.unpack_from(part, len(part) - 8)
            flags = int(flags) | int(counts[k, -1])
            if statuses[k] == _CONFLICT:
                flags |= FLAG_CONFLICT
            row = part[:-8] + counts[k, :-1].tobytes() + _FLAGS.pack(flags)
            rows.append(row)
            key, renew, head = logs[k]
            if head:
                entries.append((key, renew, head + row))
        if self.cluster.append_logs(checks, entries, self._ttl_ms, timeout_s):
            return None
        return b"".join(rows)

    def get(self, keys: list[str], timeout_s: float | None = None) -> list[bytes | None]:
        """The logs at ``keys`` (None: absent), read node by node (``timeout_s``: the
        cluster client's own socket timeout bounds each read)."""
        del timeout_s
        pipe: Any = self.cluster.cluster.pipeline()  # type: ignore[no-untyped-call]
        for key in keys:
            pipe.get(key)
        return list(pipe.execute())

    def replace(
        self, items: list[tuple[str, int, bytes]], timeout_s: float | None = None
    ) -> list[bool]:
        """Each (log key, expected length, snapshot) replaced by ``replace_log.lua`` on its
        node if the log has that length."""
        del timeout_s
        out = []
        for key, expected, snapshot in items:
            args = [expected, snapshot, self._ttl_ms]
            out.append(int(self.cluster.run_one(key, self._replace, [key], args)) == 1)
        return out
