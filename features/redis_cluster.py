"""The Redis store's batches on Redis Cluster: split per node, one pipelined round per half.

A batch is applied in up to three rounds, each one script call per node sent to every
node before any reply is read (nodes work in parallel):

1. terminal half (``APPLY_TERMINALS``), per node holding the transactions' terminals: each
   terminal adds a transaction once (its own tx id set) and answers its counts;
2. customer half (``APPLY_CUSTOMERS``), per node holding the customers, given those counts:
   a known transaction returns its stored row, a new one is added and its whole row stored;
3. the offsets marks (``APPLY_TRANSACTIONS`` with no transaction), after both halves.

Why this order is retry-safe: a row is stored only once its terminal counts are known, and
a stored row is always what is returned. A crash or lost reply after round 1 leaves
terminals holding the transaction, and a redelivery finds it there (no double count), then
stores the first row; after round 2 the redelivery gets the stored rows whatever round 1
answers. No vector is returned before it is stored, so every vector a caller ever sees for
a transaction is the same. Scripts name their keys in ARGV (``allow-cross-slot-keys``):
a script touches only keys of the node it runs on; one whose slots moved fails, the slot
map is reloaded and the error surfaces as ``FeatureStoreUnavailable`` (the caller retries).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from redis.cluster import PRIMARY, ClusterNode, RedisCluster
from redis.crc import key_slot
from redis.exceptions import NoScriptError, ResponseError

from features.batch import TransactionBatch
from features.redis_scripts import (
    APPLY_CUSTOMERS,
    APPLY_LABELS_CROSS_SLOT,
    APPLY_TERMINALS,
    rows_keys,
)
from features.schema import Label

Call = tuple[ClusterNode, Any, list[Any]]
"""(node, script, ARGV) of one script call; the script has ``sha`` and ``source``."""
Packer = Callable[[str, str, list[str], list[Any]], list[bytes]]


class ClusterBatches:
    """Applies batches and labels on a Redis Cluster (see the module docstring)."""

    def __init__(self, cluster: RedisCluster, prefix: str, script_type: Any, pack: Packer):
        self.cluster = cluster
        self._prefix = prefix
        self._pack = pack
        self._terminals = script_type(APPLY_TERMINALS)
        self._customers = script_type(APPLY_CUSTOMERS)
        self._labels = script_type(APPLY_LABELS_CROSS_SLOT)

    def node_of(self, key: str) -> ClusterNode:
        node: ClusterNode = self.cluster.nodes_manager.get_node_from_slot(key_slot(key.encode()))
        return node

    def apply(
        self,
        batch: TransactionBatch,
        numbers: np.ndarray,
        head: list[Any],
        ntw: int,
        timeout_s: float | None,
    ) -> list[bytes]:
        """Raw rows of ``batch`` in order; ``head`` is ARGV before the numbers."""
        counts = self.apply_terminals(batch, numbers, head, ntw, timeout_s)
        return self.apply_customers(batch, numbers, head, counts, timeout_s)

    def apply_terminals(
        self,
        batch: TransactionBatch,
        numbers: np.ndarray,
        head: list[Any],
        ntw: int,
        timeout_s: float | None,
    ) -> np.ndarray:
        """Round 1: every transaction's terminal counts, ``(n, 2 * ntw)`` float64."""
        p = self._prefix
        groups = self._group([f"{p}:{{t:{t}}}:w" for t in batch.terminal_id])
        calls: list[Call] = []
        for node, idx in groups:
            keys = []
            for i in idx:
                t = f"{p}:{{t:{batch.terminal_id[i]}}}"
                keys += [f"{t}:w", f"{t}:fs", f"{t}:i"]
            ids = [batch.transaction_id[i] for i in idx]
            args = [len(idx), *head, numbers[idx].tobytes(), *keys, *ids]
            calls.append((node, self._terminals, args))
        counts = np.empty((len(batch), 2 * ntw), dtype="<f8")
        for (_, idx), reply in zip(groups, self._round(calls, timeout_s), strict=True):
            counts[idx] = np.frombuffer(reply, dtype="<f8").reshape(len(idx), 2 * ntw)
        return counts

    def apply_customers(
        self,
        batch: TransactionBatch,
        numbers: np.ndarray,
        head: list[Any],
        counts: np.ndarray,
        timeout_s: float | None,
    ) -> list[bytes]:
        """Round 2: every transaction's row, stored the first time."""
        p = self._prefix
        rows_at = rows_keys(p, batch.customer_id, numbers[:, 0])
        groups = self._group(rows_at)
        calls: list[Call] = []
        for node, idx in groups:
            keys = []
            for i in idx:
                keys += [rows_at[i], f"{p}:{{c:{batch.customer_id[i]}}}:h"]
            ids = [batch.transaction_id[i] for i in idx]
            args = [len(idx), *head, numbers[idx].tobytes(), counts[idx].tobytes(), *keys, *ids]
            calls.append((node, self._customers, args))
        rows: list[bytes] = [b""] * len(batch)
        for (_, idx), reply in zip(groups, self._round(calls, timeout_s), strict=True):
            for i, row in zip(idx, reply, strict=True):
                rows[i] = row
        return rows

    def apply_labels(self, labels: Sequence[Label], t_keep: int, ttl_ms: int) -> int:
        p = self._prefix
        groups = self._group([f"{p}:{{t:{label.terminal_id}}}:l" for label in labels])
        calls: list[Call] = []
        for node, idx in groups:
            keys: list[str] = []
            triples: list[Any] = []
            for i in idx:
                label = labels[i]
                t = f"{p}:{{t:{label.terminal_id}}}"
                keys += [f"{t}:l", f"{t}:f", f"{t}:fs"]
                triples += [label.transaction_id, label.event_time_ms // 1000, int(label.is_fraud)]
            calls.append((node, self._labels, [len(idx), t_keep, ttl_ms, *keys, *triples]))
        return sum(int(r) for r in self._round(calls, None))

    def run_one(self, key: str, script: Any, keys: list[str], args: list[Any]) -> Any:
        """One script call with declared keys (one slot) on the node holding ``key``."""
        node = self.node_of(key)
        return self._round([(node, script, args)], None, keys)[0]

    def drop(self, prefix: str) -> int:
        deleted = 0
        nodes = self.cluster.nodes_manager.nodes_cache.values()
        for node in [n for n in nodes if n.server_type == PRIMARY]:
            client = node.redis_connection
            pipe = client.pipeline(transaction=False)
            for key in client.scan_iter(match=f"{prefix}:*", count=1000):
                pipe.unlink(key)  # one key per command: keys of one node span many slots
            deleted += sum(int(n) for n in pipe.execute())
        return deleted

    def _group(self, keys: list[str]) -> list[tuple[ClusterNode, list[int]]]:
        by_node: dict[str, tuple[ClusterNode, list[int]]] = {}
        for i, key in enumerate(keys):
            node = self.node_of(key)
            by_node.setdefault(node.name, (node, []))[1].append(i)
        return list(by_node.values())

    def _round(
        self, calls: list[Call], timeout_s: float | None, keys: list[str] | None = None
    ) -> list[Any]:
        """Send every call, then read every reply: one round trip, all nodes at once."""
        read: Any = {} if timeout_s is None else {"timeout": timeout_s}
        taken: list[tuple[Any, Any]] = []
        try:
            for node, script, args in calls:
                pool = node.redis_connection.connection_pool
                conn = pool.get_connection()
                taken.append((pool, conn))
                conn.send_packed_command(self._pack("EVALSHA", script.sha, keys or [], args))
            replies = []
            for (_, conn), (_, script, args) in zip(taken, calls, strict=True):
                try:
                    replies.append(conn.read_response(**read))
                except NoScriptError:
                    conn.send_packed_command(self._pack("EVAL", script.source, keys or [], args))
                    replies.append(conn.read_response(**read))
            return replies
        except BaseException as exc:
            for _, conn in taken:
                conn.disconnect()  # a late reply must never be read as the next call's
            if isinstance(exc, ResponseError):
                self.cluster.nodes_manager.initialize()  # slots may have moved: reload
            raise
        finally:
            for pool, conn in taken:
                pool.release(conn)


def offsets_args(offsets: Mapping[int, int]) -> list[int]:
    """(partition, offset)... as the marks part of ``APPLY_TRANSACTIONS``'s ARGV."""
    out: list[int] = []
    for partition, offset in offsets.items():
        out += [int(partition), int(offset)]
    return out
