"""Customer state held locally (``fraudstream.features.local_store``) on a single Redis
server: a batch is one call of ``apply_local.lua`` (claims, log checks, terminals and
appends, atomically); logs are read with pipelined GETs and rewritten as snapshots with
``replace_log.lua``, each one round trip."""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any

import numpy as np

from fraudstream.features.batch import TransactionBatch
from fraudstream.features.local_plan import BatchPlan
from fraudstream.features.redis_batches import offsets_key
from fraudstream.features.redis_calls import Call, Script, deadline_of, receive, send
from fraudstream.features.redis_scripts import APPLY_LOCAL, REPLACE_LOG
from fraudstream.features.redis_store import RedisStore


class ServerLogs:
    """The calls of the local store on one Redis server."""

    def __init__(self, store: RedisStore, ttl_ms: int) -> None:
        self._store = store
        self._ttl_ms = ttl_ms
        self._apply = Script(APPLY_LOCAL)
        self._replace = Script(REPLACE_LOG)

    def apply(
        self,
        plan: BatchPlan,
        batch: TransactionBatch,
        numbers: np.ndarray,
        fps: bytes,
        offsets: Mapping[int, int],
        topic: str,
        timeout_s: float | None,
    ) -> bytes | list[Any]:
        """The sent transactions' rows, one after the other, or ``['retry', claims, bad
        checks...]`` when a claim or a log was not what the plan expected."""
        p, sent = self._store.prefix, plan.sent
        keys: list[str] = []
        for i in sent:
            keys += [f"{p}:{{x:{batch.transaction_id[i]}}}", f"{p}:{{t:{batch.terminal_id[i]}}}:w"]
        check = {customer: k for k, customer in enumerate(plan.checks, start=1)}
        keys += [log_key(p, c) for c in plan.checks]
        owners = [check[batch.customer_id[i]] for i in sent]
        if offsets:
            keys.append(offsets_key(p, topic))
        args = self._store.head.argv(len(sent), offsets, 0)
        args += [
            numbers[sent].tobytes(),
            b"".join(fps[8 * i : 8 * i + 8] for i in sent),
            bytes(plan.expect),
            b"".join(plan.parts),
            bytes(plan.renew),
            struct.pack(f"<{len(owners)}I", *owners),
            len(plan.checks),
            *plan.checks.values(),
            *plan.heads,
        ]
        reply: bytes | list[Any] = self._calls([(self._apply, keys, args)], timeout_s)[0]
        return reply

    def get(self, keys: list[str], timeout_s: float | None) -> list[bytes | None]:
        """The logs at ``keys`` (None: absent), one round trip."""
        pool = self._store.pool
        conn: Any = pool.get_connection()
        try:
            conn.send_packed_command([conn.pack_command("GET", key)[0] for key in keys])
            timeout = {} if timeout_s is None else {"timeout": timeout_s}
            return [conn.read_response(**timeout) for _ in keys]
        except BaseException:
            conn.disconnect()  # a late reply must never be read as the next call's
            raise
        finally:
            pool.release(conn)

    def replace(self, items: list[tuple[str, int, bytes]], timeout_s: float | None) -> list[bool]:
        """Each (log key, expected length, snapshot) replaced if the log has that length."""
        calls: list[Call] = [
            (self._replace, [key], [expected, snap, self._ttl_ms]) for key, expected, snap in items
        ]
        return [int(done) == 1 for done in self._calls(calls, timeout_s)]

    def _calls(self, calls: list[Call], timeout_s: float | None) -> list[Any]:
        pool = self._store.pool
        conn: Any = pool.get_connection()
        try:
            send(conn, calls)
            return receive(conn, calls, deadline_of(timeout_s))
        except BaseException:
            conn.disconnect()
            raise
        finally:
            pool.release(conn)


def log_key(prefix: str, customer: str) -> str:
    """The key of ``customer``'s log (``fraudstream.features.customer_log``)."""
    return f"{prefix}:{{c:{customer}}}:log"
