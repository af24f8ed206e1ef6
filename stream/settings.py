"""Settings of ``fraudstream serve`` and ``fraudstream check``, built by
``fraudstream.features.config.load_settings``: flags over ``FRAUDSTREAM_*`` variables over the
config
file's ``[serve]`` (``[check]``) and ``[common]`` tables. Secrets are ``SecretStr``."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, SecretStr

from fraudstream.features.config import KafkaSettings
from fraudstream.features.local_store import CustomerStateKind
from fraudstream.stream.group_order import DEFAULT_SLACK_S

DEVICE_PATTERN = r"^(auto|cpu|cuda(:\d+)?)$"
"""What ``--device`` accepts."""


class CheckSettings(KafkaSettings):
    """What ``fraudstream check`` needs: the connection and how long to wait."""

    config_table: ClassVar[str] = "check"
    timeout_s: float = Field(default=10.0, gt=0, le=600)
    """How long to wait for a broker to answer."""


class ServeSettings(KafkaSettings):
    """Everything ``fraudstream serve`` needs; one frozen object built at start."""

    config_table: ClassVar[str] = "serve"
    reads_flat_file: ClassVar[bool] = True

    redis_url: SecretStr
    """Feature store URL (redis:// or rediss://, user and password allowed; never logged)."""
    redis_prefix: str = Field(default="fs", pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    """Key prefix of the feature store."""
    customer_state: CustomerStateKind = "redis"
    """Where customer windows are computed (``fraudstream.features.local_store``)."""
    registry: Path
    """Model registry folder (holds CURRENT and one folder per version)."""
    group_id: str = "fraudstream"
    """Consumer group; every serve process of one deployment shares it."""
    input_topic: str = "transactions"
    """Topic of incoming transactions."""
    decisions_topic: str = "fraud.decisions"
    """Topic of decisions."""
    alerts_topic: str = "fraud.alerts"
    """Topic of review and decline alerts."""
    dlq_topic: str = "transactions.dlq"
    """Dead-letter topic for bad input."""
    labels_topic: str = "fraud.labels"
    """Fraud labels (read by a store rebuild)."""
    labels_group_id: str = "fraudstream-labels"
    """Consumer group of the label worker (a store rebuild reads labels up to its offsets)."""
    store_rebuild: bool = True
    """Rebuild the feature store from Kafka when it lost data (see
    ``fraudstream.stream.store_guard``)."""
    budget_ms: float = Field(default=50.0, gt=0, le=60_000)
    """Per-message latency budget from the Kafka timestamp (corrected for the producer's
    clock skew, see ``fraudstream.stream.clock``)."""
    degrade: Literal["never", "to-meet-deadlines"] = "to-meet-deadlines"
    """``to-meet-deadlines``: a rung below the full path only where it makes a deadline the
    full path would miss, and only one keeping at least half the full path's average
    precision (in practice the truncated model; partial features only when the store is
    down). ``never``: the full path always (deadlines may be missed, decisions keep their
    quality)."""
    store_timeout_ms: int = Field(default=1_000, ge=10, le=60_000)
    """A store call unanswered this long counts as an outage (partial features, backoff,
    catch-up); a slower-than-usual reply within it is waited for."""
    clock_skew_tolerance_ms: float = Field(default=20.0, ge=0, le=10_000)
    """Producer timestamps up to this far behind serve's clock are taken as they are; more is
    taken for clock skew and corrected (see ``fraudstream.stream.clock``)."""
    max_batch: int = Field(default=1024, ge=1, le=65_536)
    """Largest micro-batch."""
    fetch_wait_ms: int | None = Field(default=None, ge=0, le=1_000)
    """How long the broker may hold a fetch until ``fetch_min_bytes`` are there (default:
    a tenth of the budget, 1 to 10 ms): records then come in batches rather than one fetch,
    and one scoring pass, every few records, at a small share of the budget."""
    commit_interval_ms: int = Field(default=100, ge=0, le=60_000)
    """At-least-once: least time between two offset commits (0: after every batch).
    Acknowledged offsets wait at most this long; a drain (revoke, stop) commits them all."""
    transaction_interval_ms: int = Field(default=15, ge=0, le=10_000)
    """Exactly-once: least time from one commit's start to the next one's (0: the next as
    soon as the previous one is done). Decisions scored meanwhile are produced into the open
    transaction and wait for its commit, never past the point where their deadline would be
    missed (``fraudstream.stream.outbox``)."""
    store_lookahead: bool = True
    """With more input waiting, the next batch's store call runs on a helper thread while
    the loop scores and emits the one before (``fraudstream.stream.lookahead``)."""
    align_partitions: bool = True
    """Partitions with a backlog are taken in Kafka timestamp order, so that a terminal
    sees its records in order however the consumer's fetches interleave them
    (``fraudstream.stream.alignment``); caught-up partitions go as they come."""
    group_order: bool = True
    """With ``align_partitions``, the group's processes publish the event time each of their
    partitions has come to (in Redis, under the store's prefix) and none takes a record
    dated more than ``group_order_slack_s`` past the least of them, so that one
    process running ahead of another (a backlog drained by several) cannot give terminals
    windows that miss the other's records (``fraudstream.stream.group_order``)."""
    group_order_slack_s: float = Field(default=DEFAULT_SLACK_S, gt=0, le=365 * 86_400)
    """How far past the group's slowest partition a process may go (event time): below the
    label delay (7 days) terminal windows stay exact; the default keeps a day of margin."""
    fetch_min_bytes: int = Field(default=8_192, ge=1, le=16_777_216)
    """Bytes a fetch waits for (up to ``fetch_wait_ms``); 8 KiB is about 40 transactions."""
    guarantee: Literal["at-least-once", "exactly-once"] = "at-least-once"
    """Delivery guarantee."""
    device: str = Field(default="auto", pattern=DEVICE_PATTERN)
    """Scoring device: auto (a GPU when one works, else the CPU), cpu, cuda or cuda:N."""
    scoring_threads: int = Field(default=1, ge=1, le=1_024)
    """CPU threads XGBoost may use on one batch (capped at the usable cores; batch sizes
    where more win are calibrated at load). One leaves the other cores to the store call
    ahead, librdkafka and whatever shares the machine, where a second prediction thread
    costs more CPU than it saves (docs/performance-history.md, 2026-12-05 afternoon); more
    shorten only large batches on cores that would otherwise idle. Scale out with
    processes."""
    metrics_port: int = Field(default=9108, ge=0, le=65_535)
    """Port of /metrics, /healthz and /readyz (0: off)."""
    shadow: str | None = None
    """Challenger model version scored beside the champion when slack allows."""
    shadow_topic: str = "fraud.shadow"
    """Topic of shadow scores."""
    instance_id: str | None = None
    """This process's name in the group, kept across restarts (a StatefulSet ordinal, a
    compose replica): exactly-once's transactional id derives from it, so a restart fences
    its predecessor at once. Default: ``<host>-<slot>``, the lowest slot free on this host
    (see ``fraudstream.stream.identity``)."""
    transactional_id: str | None = None
    """Transactional id for exactly-once (default: ``<group>-<instance id>``)."""
    liveness_timeout_s: float = Field(default=60.0, gt=0, le=3_600)
    """/healthz answers 503 once serve's loop has made no progress for this long."""
    shutdown_timeout_s: float = Field(default=30.0, gt=0, le=600)
    """Upper bound on a graceful stop."""
    model_poll_s: float = Field(default=2.0, gt=0)
    """How often the registry's CURRENT pointer is checked."""
    rules_review_amount: float = Field(default=220.0, ge=0)
    """Rule fallback: review at or above this amount."""
    rules_decline_amount: float = Field(default=5_000.0, ge=0)
    """Rule fallback: decline at or above this amount."""
    max_pending: int = Field(default=200_000, ge=1)
    """Most transactions kept for an unavailable store; beyond it, consumption pauses."""
    transaction_timeout_ms: int = Field(default=60_000, ge=1_000)
    """Kafka transaction timeout (exactly-once)."""

    def effective_fetch_wait_ms(self) -> int:
        if self.fetch_wait_ms is not None:
            return self.fetch_wait_ms
        return int(min(10.0, max(1.0, self.budget_ms / 10)))
