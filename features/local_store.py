"""The online store with each customer's state held by the process that scores it
(``--customer-state local``): Redis keeps the identity claims, the terminals (as the Redis
store does, in the same keys, so the label pipeline is unchanged) and each customer's log,
the durable copy of its state (``fraudstream.features.customer_log``).

A batch is one script call (``apply_local.lua``): the customer's half is computed here
from the histories this process holds, and the script, atomically, claims the ids, checks
that every log it appends to still has the length this process last saw, applies the
terminal half and appends each applied transaction's entry with its whole row. A customer
not held yet is read from its log first (one pipelined GET for all of a batch's). Nothing
is written behind: when the call returns, Redis holds everything the batch's answers came
from, so the offsets committed after it never run ahead of the store.

Why it stays exact when several processes write one customer (a rebalance, a process
that has not yet noticed it lost its partitions, a backfill on the same prefix): a log's
length is its version. If another writer appended, the check fails, the script changes
nothing but the claims, and this process drops the batch's customers, reads their logs
again and recomputes. A claim that disagrees with what this process expected (the same id
applied by another customer's process with other content) is retried the same way, with
that row read-only. The semantics are ``fraudstream.features.store``'s, and the customer's
half is the in-process store's own code.

On a Redis Cluster the batch takes three rounds instead of one call
(``fraudstream.features.local_cluster``).
"""

from __future__ import annotations

import logging
import struct
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt
import redis
from redis.exceptions import RedisError

from fraudstream.features.batch import TransactionBatch
from fraudstream.features.customer_log import (
    CustomerState,
    LogError,
    Rules,
    replay,
)
from fraudstream.features.definitions import FeatureConfig, FloatArray, IntArray
from fraudstream.features.exceptions import ConfigError, FeatureStoreUnavailable
from fraudstream.features.local_cluster import ClusterLogs
from fraudstream.features.local_plan import APPLY, CONFLICT, BatchPlan, Planner
from fraudstream.features.local_server import ServerLogs, log_key
from fraudstream.features.redis_batches import answers, numbers_of
from fraudstream.features.redis_calls import deadline_of
from fraudstream.features.redis_scripts import LAYOUT
from fraudstream.features.redis_store import RedisStore, check_ids
from fraudstream.features.schema import Label
from fraudstream.features.store import (
    DEFAULT_TOPIC,
    MAX_CUSTOMER_RECORDS,
    MAX_TERMINAL_RECORDS,
    fingerprints,
    keeps,
    raw_width,
    watermarks,
)

logger = logging.getLogger(__name__)

CustomerStateKind = Literal["redis", "local"]
"""Where customers' windows are computed: in Redis (``RedisStore``) or in the process that
scores them (``LocalStore``); the ``--customer-state`` flag of serve and ``features``."""
CUSTOMER_STATE_HELP = (
    "where customer windows are computed: redis (default) or local (in this process from "
    "per-customer logs in Redis: about half the Redis CPU per transaction); a prefix "
    "keeps the kind it was written with"
)
LOCAL_LAYOUT = f"{LAYOUT}L"
"""The key layout of a prefix whose customers are kept as logs (``redis_scripts``)."""
MAX_CUSTOMERS = 1_000_000
"""Customers held in memory at most; the least recently used are dropped (and read again
from their logs when they come back)."""
MAX_TRIES = 5
"""Script calls per batch before giving up on logs that keep changing under it."""
COMPACT_SLACK = 32
"""A log is rewritten as a snapshot once it has this many more entries than twice its
history's records."""


class LocalStore:
    """``FeatureStore`` and ``OffsetTrackingStore`` with customer state held here."""

    def __init__(
        self,
        redis_store: RedisStore,
        *,
        max_customers: int = MAX_CUSTOMERS,
    ) -> None:
        if (
            isinstance(max_customers, bool)
            or not isinstance(max_customers, int)
            or (max_customers < 1)
        ):
            msg = f"max_customers must be a whole number >= 1, got {max_customers!r}"
            raise ConfigError(msg)
        self._redis = redis_store
        self._redis.layout = LOCAL_LAYOUT
        self.config: FeatureConfig = redis_store.config
        self.prefix = redis_store.prefix
        c_keep, _ = keeps(self.config)
        windows = tuple(self.config.customer_windows_s)
        self._rules = Rules(
            c_keep,
            redis_store.max_customer_records,
            windows,
            max(windows),
            8 * (raw_width(self.config) + 1),
        )
        self._customers: OrderedDict[str, CustomerState] = OrderedDict()
        self._cluster: ClusterLogs | None = None
        """The rounds of a batch on a Redis Cluster (``fraudstream.features.local_cluster``)."""
        self.retries = 0
        """Batches computed again because a log or a claim changed under this process."""
        self._max_customers = max_customers
        self._ttl_ms = redis_store.customer_ttl_ms
        parts = struct.Struct(f"<{4 + 2 * len(windows)}d")
        self._planner = Planner(self._rules, redis_store.renew_s, parts)
        self._server = ServerLogs(redis_store, self._ttl_ms)

    @classmethod
    def from_url(
        cls,
        url: str,
        prefix: str = "fs",
        config: FeatureConfig | None = None,
        socket_timeout_s: float = 1.0,
        connect_timeout_s: float = 1.0,
        *,
        max_customer_records: int = MAX_CUSTOMER_RECORDS,
        max_terminal_records: int = MAX_TERMINAL_RECORDS,
        max_customers: int = MAX_CUSTOMERS,
    ) -> LocalStore:
        """As ``RedisStore.from_url`` (a single server or any node of a Redis Cluster)."""
        inner = RedisStore.from_url(
            url,
            prefix,
            config,
            socket_timeout_s,
            connect_timeout_s,
            max_customer_records=max_customer_records,
            max_terminal_records=max_terminal_records,
        )
        return cls(inner, max_customers=max_customers)

    @property
    def client(self) -> redis.Redis:
        """The Redis connection (pool) this store uses."""
        return self._redis.client

    def eval_on_key(self, script: str, key: str, args: Sequence[str | int]) -> object:
        """See ``RedisStore.eval_on_key``."""
        return self._redis.eval_on_key(script, key, args)

    @property
    def held(self) -> int:
        """Customers held in memory now."""
        return len(self._customers)

    def apply(
        self,
        batch: TransactionBatch,
        timeout_s: float | None = None,
        *,
        offsets: Mapping[int, int] | None = None,
        topic: str = DEFAULT_TOPIC,
    ) -> FloatArray:
        """See ``FeatureStore.apply`` and ``OffsetTrackingStore.apply``."""
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
        """See ``FeatureStore.apply_flagged``."""
        check_ids(batch)
        wm = watermarks(batch, watermark_s)
        if len(batch) == 0 and not offsets:
            return answers([], batch, wm, self.config)
        numbers = numbers_of(batch, wm)
        fps = fingerprints(batch)
        deadline = deadline_of(timeout_s)
        with self._redis.guard():
            self._prepare()
            rows = self._apply_rows(batch, numbers, fps, offsets or {}, topic, deadline)
        return answers(rows, batch, wm, self.config)

    def apply_labels(self, labels: Sequence[Label]) -> int:
        """See ``FeatureStore.apply_labels`` (terminals are the Redis store's keys)."""
        return self._redis.apply_labels(labels)

    def applied_offsets(self, topic: str = DEFAULT_TOPIC) -> dict[int, int]:
        return self._redis.applied_offsets(topic)

    def epoch(self, topic: str = DEFAULT_TOPIC) -> str:
        return self._redis.epoch(topic)

    def drop(self) -> int:
        """Delete every key under the prefix and forget the customers held."""
        self._customers.clear()
        return self._redis.drop()

    def forget(self) -> None:
        """Drop every customer held (they are read again from their logs when next seen)."""
        self._customers.clear()

    def close(self) -> None:
        self._redis.close()

    def _prepare(self) -> None:
        self._redis.detect()
        cluster = self._redis.cluster_batches
        if cluster is not None and self._cluster is None:
            head = self._redis.head.argv(0, {}, 0)[1:]
            ntw = len(self.config.terminal_windows_s)
            self._cluster = ClusterLogs(cluster, head, ntw, self._ttl_ms)
        self._redis.check_schema()

    def _apply_rows(
        self,
        batch: TransactionBatch,
        numbers: np.ndarray,
        fps: bytes,
        offsets: Mapping[int, int],
        topic: str,
        deadline: float | None,
    ) -> list[bytes]:
        cluster = self._cluster
        if cluster is None:
            conflicts: set[int] = set()

            def on_server(plan: BatchPlan) -> bytes | None:
                reply = self._server.apply(
                    plan, batch, numbers, fps, offsets, topic, _left(deadline)
                )
                if isinstance(reply, list):  # ['retry', claims, bad checks...]
                    conflicts.update(plan.sent[k] for k, s in enumerate(reply[1]) if s == CONFLICT)
                    return None
                return reply

            return self._tries(batch, numbers, fps, conflicts, on_server, deadline)
        rows: list[bytes] = []
        if len(batch):
            rows = self._cluster_rows(cluster, batch, numbers, fps, deadline)
        if offsets:
            self._redis.mark_cluster_offsets(offsets, topic)
        return rows

    def _cluster_rows(
        self,
        cluster: ClusterLogs,
        batch: TransactionBatch,
        numbers: np.ndarray,
        fps: bytes,
        deadline: float | None,
    ) -> list[bytes]:
        """A batch on a Redis Cluster (``fraudstream.features.local_cluster``)."""
        statuses = cluster.claim(batch, numbers, fps, _left(deadline))
        conflicts = {i for i, status in enumerate(statuses) if status == CONFLICT}
        terminals: dict[int, np.ndarray] = {}

        def on_cluster(plan: BatchPlan) -> bytes | None:
            sent = plan.sent
            logs = [
                (log_key(self.prefix, batch.customer_id[i]), bool(renew), head)
                for i, renew, head in zip(sent, plan.renew, plan.heads, strict=True)
            ]
            checks = {log_key(self.prefix, c): n for c, n in plan.checks.items()}
            return cluster.apply(
                batch.take(sent),
                numbers[sent],
                bytes(statuses[i] for i in sent),
                plan.parts,
                logs,
                checks,
                sent,
                terminals,
                _left(deadline),
            )

        return self._tries(batch, numbers, fps, conflicts, on_cluster, deadline)

    def _tries(
        self,
        batch: TransactionBatch,
        numbers: np.ndarray,
        fps: bytes,
        conflicts: set[int],
        call: Callable[[BatchPlan], bytes | None],
        deadline: float | None,
    ) -> list[bytes]:
        """Plan the batch over the customers held and ``call`` the store with it, again
        (customers read anew from their logs) while it answers None: a log or a claim
        changed under this process."""
        for _ in range(MAX_TRIES):
            self._load(batch.customer_id, deadline)
            try:
                plan = self._planner.plan(self._customers, batch, numbers, fps, conflicts)
                reply = call(plan)
            except BaseException:
                # the histories moved ahead of a call that failed or may not have run:
                # read them again from their logs next time
                self._drop(set(batch.customer_id))
                raise
            if reply is not None:
                return self._finish(plan, batch, numbers, fps, reply, deadline)
            self.retries += 1
            self._drop(set(batch.customer_id))
        msg = (
            f"feature store {self._redis.display_url}: customer logs changed under this "
            f"process {MAX_TRIES} times in a row (another writer on prefix {self.prefix!r}?)"
        )
        raise FeatureStoreUnavailable(msg)

    def _finish(
        self,
        plan: BatchPlan,
        batch: TransactionBatch,
        numbers: np.ndarray,
        fps: bytes,
        reply: bytes,
        deadline: float | None,
    ) -> list[bytes]:
        """Every transaction's row (``reply``: the sent ones' rows, one after the other);
        the applied ones stored in their customers' state."""
        size = self._rules.row_size
        secs = numbers[:, 0].tolist()
        for k, i in enumerate(plan.sent):
            row = reply[k * size : (k + 1) * size]
            plan.answers[i] = row
            if plan.expect[k] != APPLY:
                continue
            state = self._customers[batch.customer_id[i]]
            sec = int(secs[i])
            state.store(batch.transaction_id[i], sec, fps[8 * i : 8 * i + 8] + row)
            state.length += len(plan.heads[k]) + len(row)
            state.entries += 1
        for i, j in plan.copies:
            plan.answers[i] = plan.answers[j]
        self._compact({batch.customer_id[i] for i in plan.sent}, deadline)
        return [row for row in plan.answers if row is not None]

    def _compact(self, customers: set[str], deadline: float | None) -> None:
        """Rewrite as snapshots the logs grown well past their state (one round trip)."""
        due = []
        for customer in customers:
            state = self._customers.get(customer)
            if state is not None and state.entries > 2 * len(state.hist.secs) + COMPACT_SLACK:
                due.append((customer, state, state.snapshot()))
        if not due:
            return
        items = [(log_key(self.prefix, c), s.length, snap) for c, s, snap in due]
        try:
            replaced = self._logs().replace(items, _left(deadline))
        except (RedisError, OSError) as exc:  # the batch stands; the logs are read again
            logger.warning("customer logs not compacted: %s", exc)
            replaced = [False] * len(due)
        for (customer, state, snap), done in zip(due, replaced, strict=True):
            if done:
                state.length, state.entries, state.renewed = len(snap), 1, None
            else:
                self._drop({customer})

    def _load(self, customers: Sequence[str], deadline: float | None) -> None:
        """Read the logs of the customers not held (one round trip)."""
        held = self._customers
        missing = list(dict.fromkeys(c for c in customers if c not in held))
        for c in customers:
            if c in held:
                held.move_to_end(c)
        if missing:
            keys = [log_key(self.prefix, c) for c in missing]
            for customer, data in zip(
                missing, self._logs().get(keys, _left(deadline)), strict=True
            ):
                try:
                    held[customer] = replay(data or b"", self._rules)
                except LogError as exc:
                    key = log_key(self.prefix, customer)
                    msg = f"feature store {self._redis.display_url}: key {key!r}: {exc}"
                    raise FeatureStoreUnavailable(msg) from exc
        # the least recently used go, never one of this batch's (they were moved last)
        while len(held) > max(self._max_customers, len(set(customers))):
            held.popitem(last=False)

    def _drop(self, customers: set[str]) -> None:
        for customer in customers:
            self._customers.pop(customer, None)

    def _logs(self) -> ServerLogs | ClusterLogs:
        return self._cluster or self._server


OnlineStore = RedisStore | LocalStore
"""Either online store: what serve, its store guard and ``features rebuild`` work with."""


def open_store(
    url: str,
    prefix: str,
    config: FeatureConfig | None = None,
    *,
    customer_state: CustomerStateKind = "redis",
    socket_timeout_s: float = 1.0,
    connect_timeout_s: float = 1.0,
) -> RedisStore | LocalStore:
    """The online store of the kind ``customer_state`` names (see ``CustomerStateKind``)."""
    if customer_state == "local":
        return LocalStore.from_url(url, prefix, config, socket_timeout_s, connect_timeout_s)
    if customer_state != "redis":
        msg = f"customer_state must be 'redis' or 'local', got {customer_state!r}"
        raise ConfigError(msg)
    return RedisStore.from_url(url, prefix, config, socket_timeout_s, connect_timeout_s)


def _left(deadline: float | None) -> float | None:
    """Seconds left until ``deadline`` (None: no bound)."""
    return None if deadline is None else max(deadline - time.monotonic(), 1e-4)
