"""The online feature store in Redis: server-side script calls, one round trip per batch.

Exact at one-second resolution, idempotent per transaction id (so a client may retry a
batch whose reply was lost), bounded (history beyond the largest horizon plus a day is
trimmed, a hot key's history is capped; idle keys expire), with ``fraudstream.features.store``'s
semantics, and every key is hash-tagged per entity (see ``fraudstream.features.redis_scripts``). A
batch is sent as calls of at most ``chunk_size`` transactions, so no call holds Redis
long. Every Redis error or timeout surfaces as ``FeatureStoreUnavailable``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import numpy.typing as npt
import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.connection import SSLConnection
from redis.driver_info import DriverInfo
from redis.exceptions import NoPermissionError, RedisClusterException, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from fraudstream.features.batch import TransactionBatch
from fraudstream.features.definitions import FeatureConfig, FloatArray, IntArray
from fraudstream.features.exceptions import (
    ConfigError,
    FeatureStoreTimeout,
    FeatureStoreUnavailable,
)
from fraudstream.features.redis_batches import (
    Head,
    answers,
    numbers_of,
    offsets_key,
    single_calls,
)
from fraudstream.features.redis_calls import CHUNK_SIZE, Call, Script, deadline_of, receive, send
from fraudstream.features.redis_cluster import ClusterBatches
from fraudstream.features.redis_scripts import (
    APPLY_LABELS,
    APPLY_TRANSACTIONS,
    LAYOUT,
    TTL_REFRESH_S,
)
from fraudstream.features.schema import Label
from fraudstream.features.store import (
    DEFAULT_TOPIC,
    MAX_CUSTOMER_RECORDS,
    MAX_TERMINAL_RECORDS,
    SLACK_S,
    check_caps,
    fingerprints,
    keeps,
    watermarks,
)
from fraudstream.features.validation import MAX_ID_LENGTH

logger = logging.getLogger(__name__)

_SCHEMES = ("redis", "rediss", "unix")


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
        max_customer_records: int = MAX_CUSTOMER_RECORDS,
        max_terminal_records: int = MAX_TERMINAL_RECORDS,
        chunk_size: int = CHUNK_SIZE,
    ) -> None:
        _check_prefix(prefix)
        check_caps(max_customer_records, max_terminal_records)
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            msg = f"chunk_size must be a whole number >= 1, got {chunk_size!r}"
            raise ConfigError(msg)
        self.config = config or FeatureConfig()
        self.prefix = prefix
        self._client = client
        self._pool = client.connection_pool
        self._display_url = display_url
        self._password = password
        self._tx_script = Script(APPLY_TRANSACTIONS)
        self._label_script = Script(APPLY_LABELS)
        self._chunk = chunk_size
        self._schema_checked = False
        self._mode_known = False
        self._cluster: ClusterBatches | None = None
        c_keep, t_keep = keeps(self.config)
        header = [
            len(self.config.customer_windows_s),
            len(self.config.terminal_windows_s),
            self.config.delay_s,
            c_keep,
            t_keep,
            TTL_REFRESH_S,
            (c_keep + SLACK_S + TTL_REFRESH_S) * 1000,
            # renewed at a terminal's first transaction of each week: two weeks of margin
            (t_keep + SLACK_S + 2 * TTL_REFRESH_S) * 1000,
            max_customer_records,
            max_terminal_records,
        ]
        windows = [*self.config.customer_windows_s, *self.config.terminal_windows_s]
        self._head = Head(header, windows)
        self._t_keep = t_keep
        self.max_customer_records = max_customer_records
        self.layout = str(LAYOUT)
        """The key layout this store writes (``fraudstream.features.redis_scripts``)."""

    # What fraudstream.features.local_store shares with this store: the connection, the
    # server's mode and schema check, the terminals' script arguments.
    @property
    def client(self) -> redis.Redis:
        """The seed connection (pool) of this store."""
        return self._client

    @property
    def head(self) -> Head:
        return self._head

    @property
    def pool(self) -> redis.ConnectionPool:
        return self._pool

    @property
    def display_url(self) -> str:
        return self._display_url

    @property
    def cluster_batches(self) -> ClusterBatches | None:
        """The cluster's calls (after ``detect``; None on a single server)."""
        return self._cluster

    @property
    def is_cluster(self) -> bool:
        """Whether the server is a Redis Cluster (after ``detect``)."""
        return self._cluster is not None

    @property
    def customer_ttl_ms(self) -> int:
        """Idle TTL of a customer's keys."""
        return int(self._head.header[6])

    @property
    def renew_s(self) -> int:
        """Event time after which a customer's keys get their TTL again."""
        return int(self._head.header[5])

    def detect(self) -> None:
        self._detect()

    def check_schema(self) -> None:
        self._check_schema()

    def guard(self) -> AbstractContextManager[None]:
        """Redis errors as ``FeatureStoreUnavailable`` (or ``FeatureStoreTimeout``)."""
        return self._guard()

    @classmethod
    def from_url(
        cls,
        url: str,
        prefix: str = "fs",
        config: FeatureConfig | None = None,
        socket_timeout_s: float = 1.0,
        connect_timeout_s: float = 1.0,
        **limits: int,
    ) -> RedisStore:
        """Connect lazily to ``redis://``, ``rediss://`` (TLS) or ``unix://`` with optional
        ``user:password@``; no call is made until the first apply. A URL naming any node
        of a Redis Cluster runs the store on the whole cluster. ``limits``:
        ``max_customer_records``, ``max_terminal_records``, ``chunk_size``."""
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
        return cls(
            client, prefix, config, display_url=_redact(url), password=parts.password, **limits
        )

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
        with self._guard():
            self._detect()
            self._check_schema()
            if self._cluster is not None:
                reply = self._apply_cluster(
                    self._cluster, batch, numbers, fps, offsets or {}, topic, timeout_s
                )
            else:
                calls = single_calls(
                    self._tx_script,
                    self.prefix,
                    self._head,
                    batch,
                    numbers,
                    fps,
                    offsets or {},
                    topic,
                    self._chunk,
                )
                reply = [row for rows in self._run(calls, timeout_s) for row in rows]
        return answers(reply, batch, wm, self.config)

    def apply_labels(self, labels: Sequence[Label]) -> int:
        """See ``FeatureStore.apply_labels``: the first label of a transaction wins."""
        if not labels:
            return 0
        ttl_ms = (self._t_keep + SLACK_S) * 1000
        with self._guard():
            self._detect()
            if self._cluster is not None:
                return self._cluster.apply_labels(labels, ttl_ms)
        p = self.prefix
        keys: list[str] = []
        args: list[Any] = [len(labels), ttl_ms]
        for label in labels:
            t = f"{p}:{{t:{label.terminal_id}}}"
            keys += [f"{t}:l", f"{t}:f", f"{t}:fs", f"{t}:w"]
            args += [label.transaction_id, label.event_time_ms // 1000, int(label.is_fraud)]
        with self._guard():
            return int(self._run([(self._label_script, keys, args)], None)[0])

    def applied_offsets(self, topic: str = DEFAULT_TOPIC) -> dict[int, int]:
        """Partition -> highest offset mark recorded for ``topic``."""
        with self._guard():
            self._detect()
            client = self._single_key_client()
            marks = client.hgetall(offsets_key(self.prefix, topic))
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

    def eval_on_key(self, script: str, key: str, args: Sequence[str | int]) -> Any:
        """``script`` run on the one key ``key`` (on a cluster, on the node that holds it):
        for the small shared records of other parts of fraudstream under this store's
        prefix (``fraudstream.stream.group_order``). Errors as ``guard``'s."""
        with self._guard():
            self._detect()
            return self._single_key_client().eval(script, 1, key, *args)

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

    def _apply_cluster(
        self,
        cluster: ClusterBatches,
        batch: TransactionBatch,
        numbers: np.ndarray,
        fps: bytes,
        offsets: Mapping[int, int],
        topic: str,
        timeout_s: float | None,
    ) -> list[bytes]:
        """The rounds per node, then the marks (see ``fraudstream.features.redis_cluster``)."""
        rows: list[bytes] = []
        if len(batch):
            head = self._head.argv(0, {}, 0)[1:]
            ntw = len(self.config.terminal_windows_s)
            rows = cluster.apply(batch, numbers, fps, head, ntw, timeout_s)
        if offsets:
            self.mark_cluster_offsets(offsets, topic)
        return rows

    def mark_cluster_offsets(self, offsets: Mapping[int, int], topic: str) -> None:
        """Raise ``topic``'s marks on a Redis Cluster, once a batch is applied."""
        assert self._cluster is not None
        key = offsets_key(self.prefix, topic)
        args = [*self._head.argv(0, offsets, 0), b"", b""]
        self._cluster.run_one(key, self._tx_script, [key], args)

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
            self._cluster = ClusterBatches(_cluster_client(self._pool), self.prefix, self._chunk)
        self._mode_known = True

    def _run(self, calls: list[Call], timeout_s: float | None) -> list[Any]:
        """The calls pipelined on one pooled connection: one round trip."""
        conn: Any = self._pool.get_connection()  # redis-py's Connection is untyped
        try:
            send(conn, calls)
            return receive(conn, calls, deadline_of(timeout_s))
        except BaseException:
            conn.disconnect()  # a late reply must never be read as the next call's
            raise
        finally:
            self._pool.release(conn)

    def _check_schema(self) -> None:
        """Refuse a prefix that holds features of another definition, or in another key
        layout (``fraudstream.features.redis_scripts``), once per store."""
        if self._schema_checked:
            return
        key = f"{self.prefix}:schema"
        ours = self.config.schema_hash()
        mine = f"{ours} layout {self.layout}"
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
                    f"{their_layout or 1} (an older fraudstream, or the other "
                    f"--customer-state), this store writes layout {self.layout}: use another "
                    "prefix, "
                    "or drop this one, and rebuild the store"
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


def check_ids(batch: TransactionBatch) -> None:
    ids = batch.transaction_id
    if ids and ("" in ids or max(map(len, ids)) > MAX_ID_LENGTH):
        msg = (
            f"transaction_id must have 1 to {MAX_ID_LENGTH} characters "
            "(decode_transactions rejects other messages)"
        )
        raise ValueError(msg)


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
