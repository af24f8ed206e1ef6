"""Settings of ``fraudstream features run``, built by ``fraudstream.features.config.load_settings``:
flags over ``FRAUDSTREAM_*`` variables over the config file's ``[features.run]`` and
``[common]`` tables. Secrets are ``SecretStr``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Self

from pydantic import Field, SecretStr, model_validator

from fraudstream.features.config import KafkaSettings, redact_url

_TOPIC = r"^[A-Za-z0-9._-]{1,249}$"


class LabelSettings(KafkaSettings):
    """Everything the label worker needs; one frozen object built at start."""

    config_table: ClassVar[str] = "features.run"
    reads_flat_file: ClassVar[bool] = True

    redis_url: SecretStr
    """Feature store URL (redis://, rediss:// or unix://; may hold a password; never logged)."""
    redis_prefix: str = Field(default="fs", pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    """Key prefix of the feature store (the one ``serve`` uses)."""
    group_id: str = Field(default="fraudstream-labels", pattern=r"^[A-Za-z0-9._-]{1,200}$")
    """Consumer group and faust app id (prefix of its internal topics); never serve's group.
    Decisions are read in group ``<group_id>-decisions``."""
    labels_topic: str = Field(default="fraud.labels", pattern=_TOPIC)
    """Topic of fraud labels."""
    labels_dlq_topic: str = Field(default="fraud.labels.dlq", pattern=_TOPIC)
    """Dead-letter topic for malformed labels."""
    decisions_topic: str = Field(default="fraud.decisions", pattern=_TOPIC)
    """Topic of the scorer's decisions (read for the KPIs)."""
    web_port: int = Field(default=6066, ge=1, le=65_535)
    """Port of /kpis, /healthz and /metrics."""
    web_bind: str = "0.0.0.0"  # noqa: S104 - a container's probes and Prometheus reach it
    """Interface the web server listens on."""
    max_batch: int = Field(default=500, ge=1, le=10_000)
    """Most labels (or decisions) handled in one step."""
    batch_within_s: float = Field(default=0.2, gt=0, le=10)
    """How long a step waits to fill a batch."""
    retry_initial_s: float = Field(default=0.1, gt=0, le=60)
    """First wait after the store failed; doubles on each failure ..."""
    retry_max_s: float = Field(default=5.0, gt=0, le=300)
    """... up to this."""
    kpi_partitions: int = Field(default=8, ge=1, le=1024)
    """Partitions of the internal join topic and of the KPI table's changelog."""
    kpi_retention_days: float = Field(default=14.0, gt=0, le=400)
    """Event-time span of decisions kept for the join and of hours kept for /kpis."""
    kpi_metrics_hours: int = Field(default=48, ge=1, le=24 * 400)
    """Most recent hours (of event time) exported as Prometheus gauges."""
    connect_timeout_s: float = Field(default=30.0, gt=0, le=600)
    """How long the start waits for a broker (wrong credentials fail at once)."""
    session_timeout_s: float = Field(default=30.0, ge=6, le=300)
    """Kafka group session timeout: how long a killed worker holds its partitions."""
    replication_factor: int = Field(default=1, ge=1, le=16)
    """Replication factor of the internal topics the worker creates."""
    labels_stale_after_s: float = Field(default=900.0, ge=1, le=30 * 86_400)
    """Labels count as stale (a warning, ``fraudstream_labels_stale`` 1) after this long
    without one applied while decisions keep arriving. 15 min: a stream that labels 1 % of
    1 transaction/s has a label every 100 s on average (a 15-min gap: chance e^-9), and an
    hour of decisions scored without new labels still gets noticed. A label feed delivered
    in batches (a daily chargeback file) needs more than its period."""
    table_store: str = "memory://"
    """faust table store; the changelog topic is the durable copy either way."""
    data_dir: Path | None = None
    """faust's data directory: where a ``rocksdb://`` table store keeps its tables (default
    ``<group_id>-data`` in the working directory; with the memory store, which keeps nothing
    on disk, a temporary directory removed at exit)."""

    @model_validator(mode="after")
    def _check_retry(self) -> Self:
        if self.retry_max_s < self.retry_initial_s:
            msg = "retry_max_s must be at least retry_initial_s"
            raise ValueError(msg)
        return self

    def redacted(self) -> dict[str, Any]:
        """The settings for a log line: secrets masked, the Redis URL's password masked."""
        shown = self.model_dump(mode="json", exclude={"sasl_password", "ssl_key_password"})
        shown["redis_url"] = redact_url(self.redis_url.get_secret_value())
        for name in ("sasl_password", "ssl_key_password"):
            shown[name] = "***" if getattr(self, name) is not None else None
        return shown
