"""Settings of ``fraudstream features run``: flags win over ``FRAUDSTREAM_*`` variables, which
win over a TOML file (``--config`` or ``FRAUDSTREAM_CONFIG``). Secrets are ``SecretStr``."""

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

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
_TOPIC = r"^[A-Za-z0-9._-]{1,249}$"


class LabelSettings(BaseSettings):
    """Everything the label worker needs; one frozen object built at start."""

    model_config = SettingsConfigDict(env_prefix="FRAUDSTREAM_", extra="forbid", frozen=True)
    _toml_file: ClassVar[Path | None] = None

    bootstrap_servers: str = Field(min_length=1)
    """Kafka bootstrap servers, ``host:port[,host:port...]``."""
    security_protocol: SecurityProtocol = "PLAINTEXT"
    """PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL."""
    sasl_mechanism: SaslMechanism | None = None
    """SASL mechanism (what aiokafka supports with a user and password)."""
    sasl_username: str | None = None
    """SASL user."""
    sasl_password: SecretStr | None = None
    """SASL password (environment, TOML or --sasl-password-file; never a flag, never logged)."""
    sasl_password_file: Path | None = None
    """File holding the SASL password (e.g. a mounted secret)."""
    ssl_ca_location: Path | None = None
    """CA bundle for verifying the brokers."""
    ssl_certificate_location: Path | None = None
    """Client certificate for mutual TLS."""
    ssl_key_location: Path | None = None
    """Client key for mutual TLS."""
    ssl_key_password: SecretStr | None = None
    """Password of the client key (environment only)."""
    redis_url: SecretStr
    """Feature store URL (redis://, rediss:// or unix://; may hold a password; never logged)."""
    redis_prefix: str = Field(default="fs", pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    """Key prefix of the feature store (the one ``serve`` uses)."""
    group_id: str = Field(default="fraudstream-labels", pattern=r"^[A-Za-z0-9._-]{1,200}$")
    """Consumer group and faust app id (prefix of its internal topics); never serve's group."""
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
    """faust's data directory (default ``<group_id>-data`` in the working directory)."""

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
    def _check_security(self) -> LabelSettings:
        if self.sasl_password_file is not None and self.sasl_password is None:
            object.__setattr__(self, "sasl_password", _read_secret(self.sasl_password_file))
        if self.security_protocol.startswith("SASL"):
            if not self.sasl_mechanism:
                msg = "security_protocol SASL_* needs sasl_mechanism (e.g. SCRAM-SHA-256)"
                raise ValueError(msg)
            if not self.sasl_username or self.sasl_password is None:
                msg = (
                    "security_protocol SASL_* needs sasl_username and a password "
                    "(FRAUDSTREAM_SASL_PASSWORD or --sasl-password-file)"
                )
                raise ValueError(msg)
        if (self.ssl_certificate_location is None) != (self.ssl_key_location is None):
            msg = "ssl_certificate_location and ssl_key_location go together (mutual TLS)"
            raise ValueError(msg)
        if self.retry_max_s < self.retry_initial_s:
            msg = "retry_max_s must be at least retry_initial_s"
            raise ValueError(msg)
        return self

    @property
    def uses_ssl(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    def redacted(self) -> dict[str, Any]:
        """The settings for a log line: secrets masked, the Redis URL's password masked."""
        shown = self.model_dump(mode="json", exclude={"sasl_password", "ssl_key_password"})
        shown["redis_url"] = redact_url(self.redis_url.get_secret_value())
        for name in ("sasl_password", "ssl_key_password"):
            shown[name] = "***" if getattr(self, name) is not None else None
        return shown


def redact_url(url: str) -> str:
    """``redis://user:secret@host`` → ``redis://user:***@host``."""
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def load_settings(flags: dict[str, Any], config_file: Path | None = None) -> LabelSettings:
    """Build settings from flags (None = not given), the environment and the TOML file."""
    path = config_file or _env_config()
    if path is not None and not path.is_file():
        msg = f"config file {path} does not exist (given by --config or FRAUDSTREAM_CONFIG)"
        raise ConfigError(msg)
    given = {k: v for k, v in flags.items() if v is not None}
    bound = type("LabelSettings", (LabelSettings,), {"_toml_file": path})
    try:
        settings: LabelSettings = bound(**given)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None
    return settings


def _read_secret(path: Path) -> SecretStr:
    try:
        return SecretStr(path.read_text().strip())
    except OSError as exc:
        msg = f"sasl_password_file {path}: {exc.strerror}"
        raise ValueError(msg) from None


def _env_config() -> Path | None:
    value = os.environ.get("FRAUDSTREAM_CONFIG")
    return Path(value) if value else None


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_input=False):
        field = ".".join(str(p) for p in err["loc"]) or "settings"
        flag = "--" + field.replace("_", "-")
        parts.append(f"{field} ({flag} / FRAUDSTREAM_{field.upper()}): {err['msg']}")
    return "invalid settings: " + "; ".join(parts)
