"""Rebuild the Redis feature store from the logs it is a view of: the transactions topic up
to the scorer group's committed offsets, plus the fraud labels of the same time range.

Which records a partition needs is planned from the store's offset marks, the group's
committed offsets, and a rebuild record (``P:{o:<topic>}:rebuilt``, partition -> offset the
store holds complete history from). The marks alone cannot be trusted after Redis lost data
under a running scorer: the scorer writes fresh marks into the emptied server. The rebuild
record is only written by a finished rebuild, so a store without it (emptied, or never
rebuilt) is re-read over the whole feature horizon; with it, only from the mark on.
Re-applying is safe: the store is idempotent per transaction id and exact in any order.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from fraudstream.features.definitions import MS_PER_S, FeatureConfig
from fraudstream.features.exceptions import FraudstreamError, InvalidLabel
from fraudstream.features.local_store import OnlineStore
from fraudstream.features.redis_lua_files import read_lua
from fraudstream.features.schema import Label, decode_label, decode_transactions
from fraudstream.features.store import DEFAULT_TOPIC, SLACK_S, OffsetTrackingStore

logger = logging.getLogger(__name__)

BATCH = 1000
"""Records per store call."""
_SEAL = read_lua("rebuild_seal.lua")


class RebuildError(FraudstreamError):
    """The rebuild cannot run: a broker, topic or group problem (the message says which)."""


@dataclass(frozen=True)
class PartitionPlan:
    """What one partition of the input topic needs."""

    partition: int
    """Input partition."""
    mark: int | None
    """The store's mark (next offset to apply), None when it has none."""
    committed: int | None
    """The group's committed offset, None when it has none."""
    start: int
    """First offset to re-read."""
    end: int
    """Offset to stop before (the committed one); ``start >= end``: nothing to do."""
    reason: str
    """Why this range."""
    note: str = ""
    """A warning to show (e.g. retention shorter than the horizon)."""


@dataclass(frozen=True)
class PartitionResult:
    """What the rebuild did for one partition."""

    plan: PartitionPlan
    """The range it was given."""
    applied: int
    """Valid transactions applied (re-applied ones included)."""
    skipped: int
    """Invalid records skipped (serve dead-letters them)."""
    seconds: float
    """Wall time."""


@dataclass(frozen=True)
class RebuildReport:
    """The outcome of ``rebuild``."""

    partitions: list[PartitionResult]
    """One per input partition, by partition."""
    labels_applied: int = 0
    """Labels read back from the labels topic and applied (first label wins)."""
    labels_skipped: int = 0
    """Malformed label messages skipped."""
    notes: list[str] = field(default_factory=list)
    """Warnings for the operator (retention, partitions without committed offsets)."""
    dry_run: bool = False
    """True when nothing was applied."""

    def lines(self) -> list[str]:
        """The per-partition report, one line each, then the labels and the notes."""
        out = []
        for r in self.partitions:
            p = r.plan
            if p.start >= p.end:
                out.append(f"partition {p.partition}: up to date ({p.reason})")
                continue
            done = "would apply" if self.dry_run else f"applied {r.applied}, skipped {r.skipped},"
            timing = "" if self.dry_run else f" {r.seconds:.1f} s"
            out.append(
                f"partition {p.partition}: from {p.start} to {p.end} ({p.end - p.start} "
                f"records) {done}{timing} - {p.reason}"
            )
        if not self.dry_run:
            out.append(f"labels: applied {self.labels_applied}, skipped {self.labels_skipped}")
        return out + [f"note: {n}" for n in self.notes]


def horizon_ms(config: FeatureConfig) -> int:
    """How far back in time a feature can look: the largest customer window, or the label
    delay plus the largest terminal window, plus the store's day of slack."""
    customer = max(config.customer_windows_s)
    terminal = config.delay_s + max(config.terminal_windows_s)
    return (max(customer, terminal) + SLACK_S) * MS_PER_S


def behind(
    store: OffsetTrackingStore, committed: Mapping[int, int], topic: str = DEFAULT_TOPIC
) -> dict[int, tuple[int, int]]:
    """Partitions whose store mark is below the committed offset: partition -> (mark,
    committed); mark -1 when the store has none. Committed offsets below 0 (none yet) are
    ignored. One Redis call (raises ``FeatureStoreUnavailable``)."""
    marks = store.applied_offsets(topic)
    return {
        p: (marks.get(p, -1), c) for p, c in committed.items() if c > 0 and marks.get(p, -1) < c
    }


def plan_partition(
    partition: int,
    mark: int | None,
    committed: int | None,
    trusted: bool,
    horizon_start: int,
    low: int,
) -> PartitionPlan:
    """The range a partition needs (pure). ``trusted``: a finished rebuild recorded this
    partition, so the mark says what the store holds; else it is re-read from
    ``horizon_start`` (the offset at the committed position's time minus the horizon)."""
    if committed is None or committed < 0:
        return PartitionPlan(partition, mark, None, 0, 0, "the group has committed nothing")
    if trusted and mark is not None:
        if mark >= committed:
            return PartitionPlan(partition, mark, committed, mark, committed, "mark at committed")
        start, reason = mark, "mark behind the committed offset"
    else:
        start = horizon_start
        reason = "no rebuild record (store emptied or never rebuilt): whole feature horizon"
    note = ""
    if start < low:
        note = (
            f"partition {partition}: offsets {start} to {low - 1} are no longer retained; "
            "features that needed them are incomplete (input retention is too short)"
        )
        start = low
    return PartitionPlan(partition, mark, committed, start, committed, reason, note)


class Ledger:
    """The rebuild record of one topic in the store's Redis (same hash slot as the marks)."""

    def __init__(self, client: Any, prefix: str, topic: str) -> None:
        self._client = client
        self._record = f"{prefix}:{{o:{topic}}}:rebuilt"
        self._token_key = f"{prefix}:{{o:{topic}}}:rebuilding"

    @classmethod
    def of(cls, store: OnlineStore, topic: str) -> Ledger:
        return cls(store.client, store.prefix, topic)  # the store's own connection pool

    def recorded(self) -> dict[int, int]:
        """Partition -> offset the store holds complete history from."""
        raw = self._client.hgetall(self._record)
        return {int(k): int(v) for k, v in raw.items()}

    def begin(self) -> str:
        """Start a rebuild; a server emptied before ``seal`` loses the token with the data."""
        token = uuid.uuid4().hex
        self._client.set(self._token_key, token)
        return token

    def seal(self, token: str, origins: Mapping[int, int]) -> bool:
        """Record ``origins`` if nothing emptied the server (or began another rebuild)."""
        args: list[Any] = [token]
        for p, o in origins.items():
            args += [p, o]
        return bool(self._client.eval(_SEAL, 2, self._token_key, self._record, *args))


def rebuild(
    store: OnlineStore,
    kafka_conf: Mapping[str, Any],
    input_topic: str,
    group_id: str,
    labels_topic: str | None,
    labels_group_id: str | None = None,
    dry_run: bool = False,
    config: FeatureConfig | None = None,
    echo: Callable[[str], None] = lambda _line: None,
) -> RebuildReport:
    """Re-apply what the store lost (see the module docstring); safe while serve runs.
    ``kafka_conf``: librdkafka connection and security settings
    (``KafkaConnection.to_librdkafka``)."""
    config = config or FeatureConfig()
    ledger = Ledger.of(store, input_topic)
    marks = store.applied_offsets(input_topic)
    recorded = ledger.recorded()
    with _reader(kafka_conf) as log:
        parts = log.partitions(input_topic)
        committed = log.committed(group_id, input_topic, parts)
        if all(c < 0 for c in committed.values()):
            msg = f"group {group_id!r} has no committed offsets on {input_topic!r}: wrong group?"
            raise RebuildError(msg)
        lows = {p: log.watermarks(input_topic, p)[0] for p in parts}
        times = {p: log.time_before(input_topic, p, c) for p, c in committed.items() if c > 0}
        starts = log.offsets_at(input_topic, {p: t - horizon_ms(config) for p, t in times.items()})
        plans = [
            plan_partition(p, marks.get(p), committed[p], p in recorded, starts.get(p, 0), lows[p])
            for p in parts
        ]
        notes = [p.note for p in plans if p.note]
        notes += _retention_notes(plans, starts, lows, horizon_ms(config))
        if dry_run:
            return RebuildReport([PartitionResult(p, 0, 0, 0.0) for p in plans], 0, 0, notes, True)
        token = ledger.begin()
        labels = (0, 0)
        todo = [p for p in plans if p.start < p.end]
        if labels_topic and todo:
            since = min(times[p.partition] for p in todo) - horizon_ms(config)
            labels = _apply_labels(store, log, labels_topic, labels_group_id, since, notes)
        results = []
        for p in plans:
            results.append(_apply_partition(store, log, input_topic, p))
            echo(RebuildReport([results[-1]]).lines()[0])
    origins = {p.partition: _origin(p, recorded) for p in plans if p.committed is not None}
    if not ledger.seal(token, origins):
        notes.append(
            "the store was emptied (or another rebuild began) during this rebuild: run it again"
        )
    return RebuildReport(results, labels[0], labels[1], notes)


def _origin(plan: PartitionPlan, recorded: Mapping[int, int]) -> int:
    if plan.partition in recorded and plan.reason.startswith("mark"):
        return recorded[plan.partition]
    return plan.start


def _retention_notes(
    plans: Sequence[PartitionPlan], starts: Mapping[int, int], lows: Mapping[int, int], h: int
) -> list[str]:
    out = []
    for p in plans:
        if p.reason.startswith("no rebuild") and p.start < p.end:
            if starts.get(p.partition) == lows[p.partition] and lows[p.partition] > 0:
                out.append(
                    f"partition {p.partition}: starting at the earliest retained offset "
                    f"{lows[p.partition]}; older records within the {h / 86_400_000:g}-day "
                    "feature horizon may have been deleted (input retention too short)"
                )
    return out


def _apply_partition(
    store: OnlineStore, log: _Log, topic: str, plan: PartitionPlan
) -> PartitionResult:
    started = time.perf_counter()
    applied = skipped = 0
    for msgs in log.read(topic, plan.partition, plan.start, plan.end):
        now_ms = max(m.timestamp()[1] for m in msgs)
        decoded = decode_transactions([m.value() for m in msgs], now_ms=max(now_ms, 0) or None)
        mark = {plan.partition: _offset(msgs[-1]) + 1}
        store.apply(decoded.batch, timeout_s=None, offsets=mark, topic=topic)
        applied += len(decoded.batch)
        skipped += len(decoded.errors)
    return PartitionResult(plan, applied, skipped, time.perf_counter() - started)


def _apply_labels(
    store: OnlineStore,
    log: _Log,
    topic: str,
    group_id: str | None,
    since_ms: int,
    notes: list[str],
) -> tuple[int, int]:
    parts = log.partitions(topic)
    ends = {p: log.watermarks(topic, p)[1] for p in parts}
    if group_id:
        ends = {p: c for p, c in log.committed(group_id, topic, parts).items() if c >= 0}
    starts = log.offsets_at(topic, {p: since_ms for p in parts})
    applied = skipped = 0
    for p, end in ends.items():
        low = log.watermarks(topic, p)[0]
        start = starts.get(p, end)
        if start == low and low > 0:
            notes.append(
                f"labels partition {p}: starting at the earliest retained offset {low}; "
                "older labels within the horizon may have been deleted (retention too short)"
            )
        for msgs in log.read(topic, p, start, end):
            good: list[Label] = []
            for m in msgs:
                try:
                    good.append(decode_label(m.value()))
                except InvalidLabel:
                    skipped += 1
            store.apply_labels(good)
            applied += len(good)
    return applied, skipped


class _Log:
    """Reads a topic's offsets and records through one confluent-kafka consumer."""

    def __init__(self, consumer: Consumer, conf: Mapping[str, Any], errors: list[Any]) -> None:
        self._consumer = consumer
        self._conf = conf
        self._errors = errors

    def partitions(self, topic: str, timeout_s: float = 15.0) -> list[int]:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                meta = self._consumer.list_topics(topic, timeout=1.0)
                break
            except KafkaException as exc:
                self._consumer.poll(0)  # error callbacks (a refused login) run in poll only
                self._raise_auth()
                if time.monotonic() >= deadline:
                    msg = (
                        f"no Kafka broker answered at {self._conf.get('bootstrap.servers')} "
                        f"within {timeout_s:g} s ({exc.args[0].str() if exc.args else exc}): "
                        "check --bootstrap-servers and --security-protocol"
                    )
                    raise RebuildError(msg) from None
        found = meta.topics.get(topic)
        if found is None or found.error is not None or not found.partitions:
            msg = f"topic {topic!r} does not exist (check --input-topic / --labels-topic)"
            raise RebuildError(msg)
        return sorted(found.partitions)

    def _raise_auth(self) -> None:
        for err in self._errors:
            if err.code() in (KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED):
                msg = f"Kafka authentication failed: {err.str()}; check the SASL/SSL settings"
                raise RebuildError(msg)

    def committed(self, group_id: str, topic: str, parts: Sequence[int]) -> dict[int, int]:
        conf = dict(self._conf) | {"group.id": group_id, "enable.auto.commit": False}
        probe = Consumer(conf)
        try:
            tps = probe.committed([TopicPartition(topic, p) for p in parts], timeout=15)
        except KafkaException as exc:
            msg = f"cannot read the committed offsets of group {group_id!r}: {exc}"
            raise RebuildError(msg) from None
        finally:
            probe.close()
        return {tp.partition: tp.offset for tp in tps}

    def watermarks(self, topic: str, partition: int) -> tuple[int, int]:
        low, high = self._consumer.get_watermark_offsets(
            TopicPartition(topic, partition), timeout=15
        )
        return int(low), int(high)

    def offsets_at(self, topic: str, times: Mapping[int, int]) -> dict[int, int]:
        """Partition -> first offset whose timestamp is at or after the time (or the end)."""
        if not times:
            return {}
        asked = [TopicPartition(topic, p, max(t, 0)) for p, t in times.items()]
        found = self._consumer.offsets_for_times(asked, timeout=15)
        out = {}
        for tp in found:
            out[tp.partition] = (
                tp.offset if tp.offset >= 0 else self.watermarks(topic, tp.partition)[1]
            )
        return out

    def time_before(self, topic: str, partition: int, offset: int) -> int:
        """The timestamp of the last record before ``offset`` (now when none shows)."""
        low = self.watermarks(topic, partition)[0]
        for msgs in self.read(topic, partition, max(low, offset - 1), offset, idle_s=5):
            return int(msgs[-1].timestamp()[1])
        return int(time.time() * MS_PER_S)

    def read(
        self, topic: str, partition: int, start: int, end: int, idle_s: float = 60
    ) -> Iterator[list[Any]]:
        """Batches of records with offsets in ``[start, end)``, in order."""
        if start >= end:
            return
        tp = TopicPartition(topic, partition, start)
        self._consumer.assign([tp])
        last_progress = time.monotonic()
        try:
            while True:
                got = [m for m in self._consumer.consume(BATCH, timeout=1.0) if _data(m)]
                batch = [m for m in got if _offset(m) < end]
                if batch:
                    last_progress = time.monotonic()
                    yield batch
                position = self._consumer.position([TopicPartition(topic, partition)])[0]
                if len(batch) < len(got) or position.offset >= end:
                    return
                if time.monotonic() - last_progress > idle_s:
                    return
        finally:
            self._consumer.unassign()


def _offset(msg: Any) -> int:
    return int(msg.offset())


def _data(msg: Any) -> bool:
    err = msg.error()
    if err is None:
        return True
    if err.code() == KafkaError._PARTITION_EOF:
        return False
    msg_text = f"reading {msg.topic()}[{msg.partition()}] failed: {err.str()}"
    raise RebuildError(msg_text)


@contextmanager
def _reader(conf: Mapping[str, Any]) -> Iterator[_Log]:
    """A consumer that never joins a group or commits, closed on exit."""
    errors: list[Any] = []
    settings = dict(conf) | {"error_cb": errors.append, "log_level": 0}
    consumer = Consumer(
        settings
        | {
            "group.id": f"fraudstream-rebuild-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": "read_committed",
        }
    )
    try:
        yield _Log(consumer, settings, errors)
    finally:
        consumer.close()
