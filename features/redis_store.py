"""The online feature store in Redis: one server-side script call per batch.

Exact at one-second resolution, idempotent per transaction id (so a client may retry a
batch whose reply was lost), bounded (history beyond the largest horizon plus a day is
trimmed; idle keys expire), and every key is hash-tagged per entity (see
``features.redis_scripts``). Every Redis error or timeout surfaces as
``FeatureStoreUnavailable``.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import hiredis
import numpy as np
import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.connection import SSLConnection
from redis.driver_info import DriverInfo
from redis.exceptions import (
    NoPermissionError,
    NoScriptError,
    RedisClusterException,
    RedisError,
)
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from features.batch import TransactionBatch
from features.definitions import FeatureConfig, FloatArray, seconds
from features.exceptions import ConfigError, FeatureStoreTimeout, FeatureStoreUnavailable
from features.redis_cluster import ClusterBatches, offsets_args
from features.redis_scripts import (
    APPLY_LABELS,
    APPLY_TRANSACTIONS,
    LAYOUT,
    TTL_REFRESH_S,
    rows_keys,
)
from features.schema import Label
from features.store import DEFAULT_TOPIC, SLACK_S, features_from_raw, raw_width
from features.validation import MAX_ID_LENGTH

logger = logging.getLogger(__name__)

_SCHEMES = ("redis", "rediss", "unix")


class _Script:
    """A Lua script sent by SHA, loaded on first NOSCRIPT."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()


class RedisStore:
    """``FeatureStore`` (and ``OffsetTrackingStore``) over one Redis server or a Redis
    Cluster: the first call asks the server (``INFO cluster``) which one it is."""

    def __init__(
        self,
        client: redis.Redis,
        prefix: str = "fs",
        config: FeatureConfig | None = None,
        *,
        display_url: str = "redis",
        password: str | None = None,
    ) -> None:
        _check_prefix(prefix)
        self.config = config or FeatureConfig()
        self.prefix = prefix
        self._client = client
        self._pool = client.connection_pool
        self._display_url = display_url
        self._password = password
        self._tx_script = _Script(APPLY_TRANSACTIONS)
        self._label_script = _Script(APPLY_LABELS)
        self._schema_checked = False
        self._mode_known = False
        self._cluster: ClusterBatches | None = None
        c_keep = max(self.config.customer_windows_s) + SLACK_S
        t_keep = self.config.delay_s + max(self.config.terminal_windows_s) + SLACK_S
        self._header = [
            len(self.config.customer_windows_s),
            len(self.config.terminal_windows_s),
            self.config.delay_s,
            c_keep,
            t_keep,
            TTL_REFRESH_S,
            (c_keep + SLACK_S + TTL_REFRESH_S) * 1000,
            # renewed at a terminal's first transaction of each week: two weeks of margin
            (t_keep + SLACK_S + 2 * TTL_REFRESH_S) * 1000,
        ]
        self._windows = [*self.config.customer_windows_s, *self.config.terminal_windows_s]
        self._t_keep = t_keep

    @classmethod
    def from_url(
        cls,
        url: str,
        prefix: str = "fs",
        config: FeatureConfig | None = None,
        socket_timeout_s: float = 1.0,
        connect_timeout_s: float = 1.0,
    ) -> RedisStore:
        """Connect lazily to ``redis://``, ``rediss://`` (TLS) or ``unix://`` with optional
        ``user:password@``; no call is made until the first apply. A URL naming any node
        of a Redis Cluster runs the store on the whole cluster."""
        parts = urlsplit(url)
        if parts.scheme not in _SCHEMES:
            msg = f"Redis URL must start with redis://, rediss:// or unix://, got {parts.scheme!r}"
            raise ConfigError(msg)
        client = redis.Redis.from_url(
            url,
            socket_timeout=socket_timeout_s,
            socket_connect_timeout=connect_timeout_s,
            retry=Retry(NoBackoff(), 0),
            # RESP2 and no CLIENT SETINFO: a connection without credentials needs no
            # handshake, so a per-call timeout bounds the whole call
            protocol=2,
            driver_info=DriverInfo(name=None, lib_version=None),
        )
        return cls(client, prefix, config, display_url=_redact(url), password=parts.password)

    def apply(
        self,
        batch: TransactionBatch,
        timeout_s: float | None = None,
        *,
        offsets: Mapping[int, int] | None = None,
        topic: str = DEFAULT_TOPIC,
    ) -> FloatArray:
        """See ``FeatureStore.apply`` and ``OffsetTrackingStore.apply``."""
        n = len(batch)
        if batch.transaction_id and (
            "" in batch.transaction_id or max(map(len, batch.transaction_id)) > MAX_ID_LENGTH
        ):
            msg = (
                f"transaction_id must have 1 to {MAX_ID_LENGTH} characters "
                "(decode_transactions rejects other messages)"
            )
            raise ValueError(msg)
        if n == 0 and not offsets:
            return np.empty((0, self.config.n_features), dtype=np.float64)
        with self._guard():
            self._detect()
            self._check_schema()
            if self._cluster is not None:
                reply = self._apply_cluster(self._cluster, batch, offsets or {}, topic, timeout_s)
            else:
                keys, args = self._transaction_call(batch, offsets or {}, topic)
                reply = self._run(self._tx_script, keys, args, timeout_s)
        raw = _parse_rows(reply, raw_width(self.config))
        return features_from_raw(raw, self.config)

    def apply_labels(self, labels: Sequence[Label]) -> int:
        """See ``FeatureStore.apply_labels``: the first label of a transaction wins."""
        if not labels:
            return 0
        ttl_ms = (self._t_keep + SLACK_S) * 1000
        with self._guard():
            self._detect()
            if self._cluster is not None:
                return self._cluster.apply_labels(labels, self._t_keep, ttl_ms)
        p = self.prefix
        keys: list[str] = []
        args: list[Any] = [len(labels), self._t_keep, ttl_ms]
        for label in labels:
            t = f"{p}:{{t:{label.terminal_id}}}"
            keys += [f"{t}:l", f"{t}:f", f"{t}:fs"]
            args += [label.transaction_id, label.event_time_ms // 1000, int(label.is_fraud)]
        with self._guard():
            return int(self._run(self._label_script, keys, args, None))

    def applied_offsets(self, topic: str = DEFAULT_TOPIC) -> dict[int, int]:
        """Partition -> highest offset mark recorded for ``topic``."""
        with self._guard():
            self._detect()
            client = self._single_key_client()
            marks = client.hgetall(self._offsets_key(topic))
        return {int(k): int(v) for k, v in marks.items()}

    def epoch(self, topic: str = DEFAULT_TOPIC) -> str:
        """The token of this store's current life for ``topic``'s marks, created (a random
        token) when absent: a token that changed, or vanished and was created again, means
        the data behind the marks was lost (a flushed or restarted-empty Redis)."""
        key = f"{self.prefix}:{{o:{topic}}}:epoch"
        with self._guard():
            self._detect()
            client = self._single_key_client()
            client.set(key, uuid.uuid4().hex, nx=True)
            value = client.get(key)
        if value is None:  # flushed between the two calls: the next check sees a new one
            return ""
        return value.decode() if isinstance(value, bytes) else str(value)

    def drop(self) -> int:
        """Delete every key under this store's prefix; returns how many (for tests, replays)."""
        deleted = 0
        with self._guard():
            self._detect()
            if self._cluster is not None:
                return self._cluster.drop(self.prefix)
            batch: list[bytes] = []
            for key in self._client.scan_iter(match=f"{self.prefix}:*", count=1000):
                batch.append(key)
                if len(batch) == 1000:
                    deleted += int(self._client.unlink(*batch))
                    batch = []
            if batch:
                deleted += int(self._client.unlink(*batch))
        return deleted

    def close(self) -> None:
        self._client.close()
        if self._cluster is not None:
            self._cluster.cluster.close()

    def _single_key_client(self) -> Any:
        """For calls on one key: the server, or the cluster client that routes by key
        (``_detect`` first)."""
        return self._client if self._cluster is None else self._cluster.cluster

    def _offsets_key(self, topic: str) -> str:
        return f"{self.prefix}:{{o:{topic}}}:offsets"

    def _transaction_call(
        self, batch: TransactionBatch, offsets: Mapping[int, int], topic: str
    ) -> tuple[list[str], list[Any]]:
        p = self.prefix
        numbers = _numbers(batch)
        rows = rows_keys(p, batch.customer_id, numbers[:, 0])
        keys = [
            key
            for kr, cust, term in zip(rows, batch.customer_id, batch.terminal_id, strict=True)
            for key in (kr, f"{p}:{{c:{cust}}}:h", f"{p}:{{t:{term}}}:w", f"{p}:{{t:{term}}}:fs")
        ]
        if offsets:
            keys.append(self._offsets_key(topic))
        args: list[Any] = [len(batch), *self._header, len(offsets), *self._windows]
        for partition, offset in offsets.items():
            args += [int(partition), int(offset)]
        args.append(numbers.tobytes())
        args += batch.transaction_id
        return keys, args

    def _apply_cluster(
        self,
        cluster: ClusterBatches,
        batch: TransactionBatch,
        offsets: Mapping[int, int],
        topic: str,
        timeout_s: float | None,
    ) -> list[bytes]:
        """Both halves per node, then the marks (see ``features.redis_cluster``)."""
        rows: list[bytes] = []
        if len(batch):
            head = [*self._header, 0, *self._windows]
            ntw = len(self.config.terminal_windows_s)
            rows = cluster.apply(batch, _numbers(batch), head, ntw, timeout_s)
        if offsets:
            key = self._offsets_key(topic)
            args = [0, *self._header, len(offsets), *self._windows, *offsets_args(offsets), b""]
            cluster.run_one(key, self._tx_script, [key], args)
        return rows

    def _detect(self) -> None:
        """Single server or cluster, asked once per store."""
        if self._mode_known:
            return
        try:
            enabled = int(self._client.info("cluster").get("cluster_enabled", 0)) == 1
        except NoPermissionError:
            # an ACL user without +info: a single server (on a cluster, every call would
            # then fail with MOVED, which names the cause)
            logger.warning(
                "the Redis user may not run INFO: %s taken for a single server, not a cluster",
                self._display_url,
            )
            enabled = False
        if enabled:
            self._cluster = ClusterBatches(_cluster_client(self._pool), self.prefix, _Script, _pack)
        self._mode_known = True

    def _run(
        self, script: _Script, keys: list[str], args: list[Any], timeout_s: float | None
    ) -> Any:
        """EVALSHA on one pooled connection (EVAL once on NOSCRIPT): one round trip."""
        conn: Any = self._pool.get_connection()  # redis-py's Connection is untyped
        try:
            read_timeout: Any = {} if timeout_s is None else {"timeout": timeout_s}
            try:
                conn.send_packed_command(_pack("EVALSHA", script.sha, keys, args))
                return conn.read_response(**read_timeout)
            except NoScriptError:
                conn.send_packed_command(_pack("EVAL", script.source, keys, args))
                return conn.read_response(**read_timeout)
        except BaseException:
            conn.disconnect()  # a late reply must never be read as the next call's
            raise
        finally:
            self._pool.release(conn)

    def _check_schema(self) -> None:
        """Refuse a prefix that holds features of another definition, or in another key
        layout (``features.redis_scripts``), once per store."""
        if self._schema_checked:
            return
        key = f"{self.prefix}:schema"
        ours = self.config.schema_hash()
        mine = f"{ours} layout {LAYOUT}"
        client = self._single_key_client()
        client.set(key, mine, nx=True)
        stored = client.get(key)
        theirs = stored.decode() if isinstance(stored, bytes) else stored
        if theirs is not None and theirs != mine:
            their_hash, _, their_layout = theirs.partition(" layout ")
            if their_hash != ours:
                msg = (
                    f"prefix {self.prefix!r} holds features of another definition "
                    f"(schema hash {their_hash[:12]}, this config {ours[:12]}): "
                    "use another prefix"
                )
            else:
                msg = (
                    f"prefix {self.prefix!r} holds features in key layout "
                    f"{their_layout or 1} (an older fraudstream), this version writes layout "
                    f"{LAYOUT}: use another prefix, or drop this one, and rebuild the store"
                )
            raise ConfigError(msg)
        self._schema_checked = True

    @contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except (RedisError, RedisClusterException, OSError) as exc:
            detail = f"{type(exc).__name__}: {exc}"
            if self._password:
                detail = detail.replace(self._password, "***")
            if isinstance(exc, RedisTimeoutError | TimeoutError):
                msg = f"feature store {self._display_url} did not answer in time ({detail})"
                raise FeatureStoreTimeout(msg) from exc
            msg = f"feature store {self._display_url} unavailable ({detail})"
            raise FeatureStoreUnavailable(msg) from exc


def _numbers(batch: TransactionBatch) -> np.ndarray:
    """(second, amount, ms) per transaction, little-endian doubles."""
    numbers = np.empty((len(batch), 3), dtype="<f8")
    numbers[:, 0] = seconds(batch.event_time_ms)
    numbers[:, 1] = batch.amount
    numbers[:, 2] = batch.event_time_ms
    return numbers


def _cluster_client(pool: redis.ConnectionPool) -> RedisCluster:
    """A cluster client with the seed connection's address, credentials and timeouts."""
    kw = pool.connection_kwargs
    return RedisCluster(
        host=kw["host"],
        port=kw["port"],
        username=kw.get("username"),
        password=kw.get("password"),
        socket_timeout=kw.get("socket_timeout"),
        socket_connect_timeout=kw.get("socket_connect_timeout"),
        ssl=pool.connection_class is SSLConnection,
        protocol=2,
        retry=Retry(NoBackoff(), 0),
    )


def _pack(command: str, script: str, keys: list[str], args: list[Any]) -> list[bytes]:
    """The RESP bytes of a script call, packed in C (redis-py's packer loops in Python)."""
    return [hiredis.pack_command((command, script, len(keys), *keys, *args))]


def _parse_rows(reply: Sequence[bytes], width: int) -> FloatArray:
    flat = np.frombuffer(b"".join(reply), dtype="<f8").astype(np.float64)
    return flat.reshape(len(reply), width)


def _check_prefix(prefix: str) -> None:
    if not prefix or any(ch in prefix for ch in "{}* \t\n"):
        msg = f"store prefix {prefix!r} must be non-empty, without braces, '*' or spaces"
        raise ConfigError(msg)


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment))
