"""Settings of ``fraudstream serve``: flags win over ``FRAUDSTREAM_*`` variables, which win
over a TOML file. Validated once at start; secrets are ``SecretStr`` and never logged."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from features.exceptions import ConfigError
from stream.kafka.connection import KafkaConnection, SecurityProtocol

DEVICE_PATTERN = r"^(auto|cpu|cuda(:\d+)?)$"
"""What ``--device`` accepts."""


class KafkaSecurity(BaseSettings):
    """Connection and security settings shared by every command that talks to Kafka."""

    model_config = SettingsConfigDict(env_prefix="FRAUDSTREAM_", extra="forbid", frozen=True)
    _toml_file: ClassVar[Path | None] = None

    bootstrap_servers: str
    """Kafka bootstrap servers, ``host:port[,host:port...]``."""
    security_protocol: SecurityProtocol = "PLAINTEXT"
    """PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL."""
    sasl_mechanism: str | None = None
    """SASL mechanism, e.g. SCRAM-SHA-256."""
    sasl_username: str | None = None
    """SASL user."""
    sasl_password: SecretStr | None = None
    """SASL password (environment or --sasl-password-file only; never a flag)."""
    sasl_password_file: Path | None = None
    """File holding the SASL password (e.g. a mounted secret)."""
    ssl_ca_location: str | None = None
    """CA bundle for verifying the brokers."""
    ssl_certificate_location: str | None = None
    """Client certificate for mutual TLS."""
    ssl_key_location: str | None = None
    """Client key for mutual TLS."""
    ssl_key_password: SecretStr | None = None
    """Password of the client key (environment only)."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = TomlConfigSettingsSource(settings_cls, toml_file=cls._toml_file)
        return (init_settings, env_settings, toml)

    @model_validator(mode="after")
    def _read_password_file(self) -> KafkaSecurity:
        if self.sasl_password_file is not None and self.sasl_password is None:
            try:
                secret = self.sasl_password_file.read_text().strip()
            except OSError as exc:
                msg = f"sasl_password_file {self.sasl_password_file}: {exc.strerror}"
                raise ValueError(msg) from None
            object.__setattr__(self, "sasl_password", SecretStr(secret))
        if self.security_protocol.startswith("SASL") and not self.sasl_mechanism:
            msg = "security_protocol SASL_* needs sasl_mechanism (e.g. SCRAM-SHA-256)"
            raise ValueError(msg)
        return self

    def kafka(self) -> KafkaConnection:
        """The connection values for the Kafka adapter."""
        return KafkaConnection(
            bootstrap_servers=self.bootstrap_servers,
            security_protocol=self.security_protocol,
            sasl_mechanism=self.sasl_mechanism,
            sasl_username=self.sasl_username,
            sasl_password=self.sasl_password,
            ssl_ca_location=self.ssl_ca_location,
            ssl_certificate_location=self.ssl_certificate_location,
            ssl_key_location=self.ssl_key_location,
            ssl_key_password=self.ssl_key_password,
        )


class ServeSettings(KafkaSecurity):
    """Everything ``fraudstream serve`` needs; one frozen object built at start."""

    redis_url: SecretStr
    """Feature store URL (redis:// or rediss://, user and password allowed; never logged)."""
    redis_prefix: str = Field(default="fs", pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    """Key prefix of the feature store."""
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
    """Rebuild the feature store from Kafka when it lost data (see ``stream.store_guard``)."""
    budget_ms: float = Field(default=50.0, gt=0, le=60_000)
    """Per-message latency budget from the Kafka timestamp (corrected for the producer's
    clock skew, see ``stream.clock``)."""
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
    taken for clock skew and corrected (see ``stream.clock``)."""
    max_batch: int = Field(default=1024, ge=1, le=65_536)
    """Largest micro-batch."""
    fetch_wait_ms: int | None = Field(default=None, ge=0, le=1_000)
    """How long the broker may hold a fetch until ``fetch_min_bytes`` are there (default:
    a tenth of the budget, 1 to 10 ms). Gathering there instead of fetching every few
    records cuts broker and serve CPU by about a third at 5,000 tx/s; a tenth rather than a
    fifth of the budget took the p99 there from 35 to 25 ms (medians of seven runs, README)."""
    commit_interval_ms: int = Field(default=100, ge=0, le=60_000)
    """At-least-once: least time between two offset commits (0: after every batch).
    Acknowledged offsets wait at most this long; a drain (revoke, stop) commits them all."""
    fetch_min_bytes: int = Field(default=8_192, ge=1, le=16_777_216)
    """Bytes a fetch waits for (up to ``fetch_wait_ms``); 8 KiB is about 40 transactions."""
    guarantee: Literal["at-least-once", "exactly-once"] = "at-least-once"
    """Delivery guarantee."""
    device: str = Field(default="auto", pattern=DEVICE_PATTERN)
    """Scoring device: auto (a GPU when one works, else the CPU), cpu, cuda or cuda:N."""
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
    (see ``stream.identity``)."""
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


def redact_url(url: str) -> str:
    """``redis://user:secret@host`` → ``redis://user:***@host``."""
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def load_settings(cls: type[KafkaSecurity], flags: dict[str, Any], config_file: Path | None) -> Any:
    """Build settings from flags (None = not given), the environment and the TOML file."""
    path = config_file or _env_config()
    if path is not None and not path.is_file():
        msg = f"config file {path} does not exist (given by --config or FRAUDSTREAM_CONFIG)"
        raise ConfigError(msg)
    given = {k: v for k, v in flags.items() if v is not None}
    bound = type(cls.__name__, (cls,), {"_toml_file": path})
    try:
        return bound(**given)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


def _env_config() -> Path | None:
    value = os.environ.get("FRAUDSTREAM_CONFIG")
    return Path(value) if value else None


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "settings"
        flag = "--" + field.replace("_", "-")
        parts.append(f"{field} ({flag} / FRAUDSTREAM_{field.upper()}): {err['msg']}")
    return "invalid settings: " + "; ".join(parts)
