"""The Redis store's batches on Redis Cluster: split per node, one pipelined round per step.

A batch is applied in up to four rounds, each a few script calls per node (chunks of at
most ``chunk_size`` transactions, pipelined on one connection per node) sent to every node
before any reply is read (nodes work in parallel):

0. identities (``APPLY_IDS``), per node holding the transactions' ids: each id is bound to
   the content it first came with; the answer says new, the same again, or a conflict;
1. terminal half (``APPLY_TERMINALS``), per node holding the transactions' terminals: each
   terminal adds a transaction once (its own tx id hashes) and answers its counts; a
   conflicting copy only reads;
2. customer half (``APPLY_CUSTOMERS``), per node holding the customers, given those counts:
   a known transaction returns its stored row, a new one is added and its whole row stored,
   a conflicting copy gets a row computed read-only;
3. the offsets marks (``APPLY_TRANSACTIONS`` with no transaction), after the others.

Why this order is retry-safe: a row is stored only once its terminal counts are known, and
a stored row is always what is returned. A crash or lost reply after round 0 or 1 leaves
the id bound and terminals holding the transaction, and a redelivery (the same content)
finds them (no double count), then stores the first row; after round 2 the redelivery gets
the stored rows whatever round 1 answers. No vector is returned before it is stored, so
every vector a caller ever sees for a transaction is the same. Scripts name their keys in
ARGV (``allow-cross-slot-keys``): a script touches only keys of the node it runs on; one
whose slots moved fails, the slot map is reloaded and the error surfaces as
``FeatureStoreUnavailable`` (the caller retries).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from redis.cluster import PRIMARY, ClusterNode, RedisCluster
from redis.crc import key_slot
from redis.exceptions import ResponseError

from fraudstream.features.batch import TransactionBatch
from fraudstream.features.definitions import FRAUD_AGES_WIDTH
from fraudstream.features.redis_calls import Call, Script, deadline_of, receive, send
from fraudstream.features.redis_scripts import (
    APPEND_LOGS,
    APPLY_CUSTOMERS,
    APPLY_IDS,
    APPLY_LABELS_CROSS_SLOT,
    APPLY_TERMINALS,
    rows_keys,
)
from fraudstream.features.schema import Label

NodeCalls = tuple[ClusterNode, list[Call]]
"""The calls of one round on one node, run in order."""


class ClusterBatches:
    """Applies batches and labels on a Redis Cluster (see the module docstring)."""

    def __init__(self, cluster: RedisCluster, prefix: str, chunk_size: int) -> None:
        self.cluster = cluster
        self._prefix = prefix
        self._chunk = chunk_size
        self._ids = Script(APPLY_IDS)
        self._terminals = Script(APPLY_TERMINALS)
        self._customers = Script(APPLY_CUSTOMERS)
        self._labels = Script(APPLY_LABELS_CROSS_SLOT)
        self._logs = Script(APPEND_LOGS)
        self._nodes: dict[int, ClusterNode] = {}
        """Slot -> primary, as the client's slot map said; emptied when it is reloaded
        (redis-py's lookup costs about 10 us a key in Python, three keys a transaction)."""

    def node_of(self, key: str) -> ClusterNode:
        slot = key_slot(key.encode())
        node = self._nodes.get(slot)
        if node is None:
            node = self.cluster.nodes_manager.get_node_from_slot(slot)
            self._nodes[slot] = node
        return node

    def apply(
        self,
        batch: TransactionBatch,
        numbers: np.ndarray,
        fps: bytes,
        head: list[Any],
        ntw: int,
        timeout_s: float | None,
    ) -> list[bytes]:
        """Raw rows (then flags) of ``batch`` in order; ``head`` is ARGV before the
        numbers (``fraudstream.features.redis_scripts``)."""
        statuses = self.claim(batch, numbers, fps, head, timeout_s)
        counts = self.apply_terminals(batch, numbers, head, statuses, ntw, timeout_s)
        return self.apply_customers(batch, numbers, head, statuses, counts, timeout_s)

    def claim(
        self,
        batch: TransactionBatch,
        numbers: np.ndarray,
        fps: bytes,
        head: list[Any],
        timeout_s: float | None,
    ) -> bytes:
        """Round 0: one status byte per transaction (0 new, 1 again, 2 conflict)."""
        keys = [f"{self._prefix}:{{x:{tx}}}" for tx in batch.transaction_id]

        def args(idx: list[int]) -> list[Any]:
            prints = b"".join(fps[8 * i : 8 * i + 8] for i in idx)
            return [*head, numbers[idx].tobytes(), prints, *(keys[i] for i in idx)]

        groups, replies = self._by_node(keys, self._ids, args, timeout_s)
        out = bytearray(len(batch))
        for idx, reply in zip(groups, replies, strict=True):
            for i, status in zip(idx, reply, strict=True):
                out[i] = status
        return bytes(out)

    def apply_terminals(
        self,
        batch: TransactionBatch,
        numbers: np.ndarray,
        head: list[Any],
        statuses: bytes,
        ntw: int,
        timeout_s: float | None,
    ) -> np.ndarray:
        """Round 1: every transaction's terminal counts, fraud ages, then flags,
        ``(n, 2 * ntw + FRAUD_AGES_WIDTH + 1)`` float64."""
        p = self._prefix
        bases = [f"{p}:{{t:{t}}}" for t in batch.terminal_id]

        def args(idx: list[int]) -> list[Any]:
            keys = [k for i in idx for k in (f"{bases[i]}:w", f"{bases[i]}:i")]
            ids = [batch.transaction_id[i] for i in idx]
            own = bytes(statuses[i] for i in idx)
            return [*head, numbers[idx].tobytes(), b"", own, *keys, *ids]

        groups, replies = self._by_node([f"{b}:w" for b in bases], self._terminals, args, timeout_s)
        width = 2 * ntw + FRAUD_AGES_WIDTH + 1
        counts = np.empty((len(batch), width), dtype="<f8")
        for idx, reply in zip(groups, replies, strict=True):
            counts[idx] = np.frombuffer(reply, dtype="<f8").reshape(len(idx), width)
        return counts

    def apply_customers(
        self,
        batch: TransactionBatch,
        numbers: np.ndarray,
        head: list[Any],
        statuses: bytes,
        counts: np.ndarray,
        timeout_s: float | None,
    ) -> list[bytes]:
        """Round 2: every transaction's row, stored the first time."""
        p = self._prefix
        rows_at = rows_keys(p, batch.customer_id, numbers[:, 0])

        def args(idx: list[int]) -> list[Any]:
            keys = [k for i in idx for k in (rows_at[i], f"{p}:{{c:{batch.customer_id[i]}}}:h")]
            ids = [batch.transaction_id[i] for i in idx]
            own = bytes(statuses[i] for i in idx)
            return [*head, numbers[idx].tobytes(), b"", own, counts[idx].tobytes(), *keys, *ids]

        groups, replies = self._by_node(rows_at, self._customers, args, timeout_s)
        rows: list[bytes] = [b""] * len(batch)
        for idx, reply in zip(groups, replies, strict=True):
            for i, row in zip(idx, reply, strict=True):
                rows[i] = row
        return rows

    def append_logs(
        self,
        checks: dict[str, int],
        entries: list[tuple[str, bool, bytes]],
        ttl_ms: int,
        timeout_s: float | None,
    ) -> list[str]:
        """Customer logs held locally (``fraudstream.features.local_store``): append
        ``entries`` (log key, renew its TTL, entry), node by node, each node's only when
        every log of ``checks`` (key -> expected length) on it has that length; returns
        the keys whose length differed."""
        by_node: dict[str, tuple[ClusterNode, list[str]]] = {}
        for key in checks:
            node = self.node_of(key)
            by_node.setdefault(node.name, (node, []))[1].append(key)
        rounds: list[NodeCalls] = []
        for node, keys in by_node.values():
            number = {key: k for k, key in enumerate(keys, start=1)}
            args: list[Any] = [len(keys)]
            for key in keys:
                args += [key, checks[key]]
            args.append(ttl_ms)
            for key, renew, entry in entries:
                if key in number:
                    args += [number[key], int(renew), entry]
            rounds.append((node, [(self._logs, [], args)]))
        replies = self._round(rounds, timeout_s)
        bad: list[str] = []
        for (_, keys), node_replies in zip(by_node.values(), replies, strict=True):
            bad += [keys[int(c) - 1] for c in node_replies[0]]
        return bad

    def apply_labels(self, labels: Sequence[Label], ttl_ms: int) -> int:
        p = self._prefix
        bases = [f"{p}:{{t:{label.terminal_id}}}" for label in labels]

        def args(idx: list[int]) -> list[Any]:
            keys = [k for i in idx for k in (f"{bases[i]}:{s}" for s in ("l", "f", "fs", "w"))]
            triples: list[Any] = []
            for i in idx:
                label = labels[i]
                triples += [label.transaction_id, label.event_time_ms // 1000, int(label.is_fraud)]
            return [len(idx), ttl_ms, *keys, *triples]

        _, replies = self._by_node([f"{b}:l" for b in bases], self._labels, args, None, count=False)
        return sum(int(r) for r in replies)

    def run_one(self, key: str, script: Script, keys: list[str], args: list[Any]) -> Any:
        """One script call with declared keys (one slot) on the node holding ``key``."""
        return self._round([(self.node_of(key), [(script, keys, args)])], None)[0][0]

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

    def _by_node(
        self,
        keys: list[str],
        script: Script,
        args: Any,
        timeout_s: float | None,
        count: bool = True,
    ) -> tuple[list[list[int]], list[Any]]:
        """One round of ``script`` over the rows grouped by the node of ``keys[i]``, in
        chunks: (row indices of each call, its reply). ``args(idx)`` is ARGV without n,
        which goes first when ``count``."""
        by_node: dict[str, tuple[ClusterNode, list[int]]] = {}
        for i, key in enumerate(keys):
            node = self.node_of(key)
            by_node.setdefault(node.name, (node, []))[1].append(i)
        groups: list[list[int]] = []
        rounds: list[NodeCalls] = []
        for node, idx in by_node.values():
            calls: list[Call] = []
            for lo in range(0, len(idx), self._chunk):
                chunk = idx[lo : lo + self._chunk]
                groups.append(chunk)
                calls.append((script, [], [len(chunk), *args(chunk)] if count else args(chunk)))
            rounds.append((node, calls))
        replies = [r for node_replies in self._round(rounds, timeout_s) for r in node_replies]
        return groups, replies

    def _round(self, rounds: list[NodeCalls], timeout_s: float | None) -> list[list[Any]]:
        """Send every node's calls, then read every reply: one round trip, all nodes at
        once; a node's calls run in order on one connection."""
        deadline = deadline_of(timeout_s)
        taken: list[tuple[Any, Any]] = []
        try:
            for node, calls in rounds:
                pool = node.redis_connection.connection_pool
                conn = pool.get_connection()
                taken.append((pool, conn))
                send(conn, calls)
            return [
                receive(conn, calls, deadline)
                for (_, conn), (_, calls) in zip(taken, rounds, strict=True)
            ]
        except BaseException as exc:
            for _, conn in taken:
                conn.disconnect()  # a late reply must never be read as the next call's
            if isinstance(exc, ResponseError):
                self.cluster.nodes_manager.initialize()  # slots may have moved: reload
                self._nodes.clear()
            raise
        finally:
            for pool, conn in taken:
                pool.release(conn)
