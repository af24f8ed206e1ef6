"""The Kafka connection, written once: where the brokers are and how to authenticate, the
rules those values follow, the flags that set them on every command that talks to Kafka,
and the one place they become a librdkafka configuration (the aiokafka one, for the label
worker, is ``fraudstream.features.labels.credentials``); and the offsets to commit after a
batch of consumed messages."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Literal, Self, get_args

from confluent_kafka import TopicPartition
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
"""The mechanisms both librdkafka (serve, replay) and aiokafka (the label worker) support
with a user name and a password, the only credentials these settings carry."""


class KafkaConnection(BaseModel):
    """Where the brokers are and how to authenticate; secrets are ``SecretStr``.

    Every command's settings that talk to Kafka derive from this model (through
    ``fraudstream.features.config.KafkaSettings``), so the fields and the rules are the same for
    all."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    bootstrap_servers: str = Field(min_length=1)
    """Comma-separated ``host:port`` list."""
    security_protocol: SecurityProtocol = "PLAINTEXT"
    """PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL."""
    sasl_mechanism: SaslMechanism | None = None
    """PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (SASL_* only)."""
    sasl_username: str | None = None
    """SASL user."""
    sasl_password: SecretStr | None = None
    """SASL password: from the environment, the config file or ``sasl_password_file``;
    never a flag, never logged."""
    sasl_password_file: Path | None = None
    """File holding the SASL password (e.g. a mounted secret); read at start."""
    ssl_ca_location: Path | None = None
    """CA bundle for verifying the brokers (default: the system's)."""
    ssl_certificate_location: Path | None = None
    """Client certificate (mutual TLS); comes with ``ssl_key_location``."""
    ssl_key_location: Path | None = None
    """Client private key (mutual TLS); comes with ``ssl_certificate_location``."""
    ssl_key_password: SecretStr | None = None
    """Password of the client private key (environment or config file); never logged."""

    @field_validator("bootstrap_servers")
    @classmethod
    def _check_servers(cls, value: str | None) -> str | None:
        if value is not None and not any(h.strip() for h in value.split(",")):
            msg = "give host:port[,host:port...]"
            raise ValueError(msg)
        return value

    @model_validator(mode="after")
    def _check_connection(self) -> Self:
        if self.sasl_password_file is not None and self.sasl_password is None:
            object.__setattr__(self, "sasl_password", _read_secret(self.sasl_password_file))
        if self.uses_sasl:
            _check_sasl(self)
        if (self.ssl_certificate_location is None) != (self.ssl_key_location is None):
            msg = (
                "ssl_certificate_location and ssl_key_location go together (mutual TLS): "
                "give both or neither"
            )
            raise ValueError(msg)
        return self

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol in ("SASL_PLAINTEXT", "SASL_SSL")

    @property
    def uses_ssl(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    def hosts(self) -> list[str]:
        """The bootstrap servers, one ``host:port`` each."""
        return [h.strip() for h in self.bootstrap_servers.split(",") if h.strip()]

    def to_librdkafka(self) -> dict[str, Any]:
        """The librdkafka settings for these values (secrets revealed here only)."""
        conf: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol,
        }
        optional = {
            "sasl.mechanism": self.sasl_mechanism,
            "sasl.username": self.sasl_username,
            "sasl.password": _reveal(self.sasl_password),
            "ssl.ca.location": self.ssl_ca_location,
            "ssl.certificate.location": self.ssl_certificate_location,
            "ssl.key.location": self.ssl_key_location,
            "ssl.key.password": _reveal(self.ssl_key_password),
        }
        conf.update({k: str(v) for k, v in optional.items() if v is not None})
        return conf

    def redacted(self) -> dict[str, Any]:
        """The librdkafka settings with every secret replaced, for logs."""
        return {k: ("***" if "password" in k else v) for k, v in self.to_librdkafka().items()}


def _check_sasl(conn: KafkaConnection) -> None:
    if conn.sasl_mechanism is None:
        msg = (
            f"security_protocol {conn.security_protocol} needs sasl_mechanism "
            f"({', '.join(get_args(SaslMechanism))})"
        )
        raise ValueError(msg)
    if not conn.sasl_username or conn.sasl_password is None:
        msg = (
            f"security_protocol {conn.security_protocol} needs sasl_username and a password "
            "(FRAUDSTREAM_SASL_PASSWORD or --sasl-password-file)"
        )
        raise ValueError(msg)


def _read_secret(path: Path) -> SecretStr:
    try:
        return SecretStr(path.read_text().strip())
    except OSError as exc:
        msg = f"sasl_password_file {path}: {exc.strerror}"
        raise ValueError(msg) from None


def _reveal(secret: SecretStr | None) -> str | None:
    return None if secret is None else secret.get_secret_value()


def add_kafka_flags(parser: argparse.ArgumentParser) -> None:
    """The connection flags, the same on every command that talks to Kafka. Secrets are
    never flags: the SASL password comes from ``FRAUDSTREAM_SASL_PASSWORD`` or
    ``--sasl-password-file``, the key password from ``FRAUDSTREAM_SSL_KEY_PASSWORD``."""
    group = parser.add_argument_group(
        "Kafka connection",
        "Also FRAUDSTREAM_<FLAG> or the config file's [common] table. The SASL password "
        "comes from FRAUDSTREAM_SASL_PASSWORD or --sasl-password-file, the client key's "
        "password from FRAUDSTREAM_SSL_KEY_PASSWORD; never from a flag.",
    )
    a = group.add_argument
    a(
        "--bootstrap-servers",
        metavar="HOST:PORT",
        help="Kafka bootstrap servers, comma-separated",
    )
    a(
        "--security-protocol",
        choices=get_args(SecurityProtocol),
        help="how to talk to the brokers (default PLAINTEXT); SASL_* needs --sasl-mechanism, "
        "--sasl-username and a password",
    )
    a("--sasl-mechanism", choices=get_args(SaslMechanism), help="SASL mechanism (SASL_* only)")
    a("--sasl-username", metavar="USER", help="SASL user (SASL_* only)")
    a(
        "--sasl-password-file",
        type=Path,
        metavar="FILE",
        help="file holding the SASL password, e.g. a mounted secret (or FRAUDSTREAM_SASL_PASSWORD)",
    )
    a(
        "--ssl-ca-location",
        type=Path,
        metavar="FILE",
        help="CA bundle that verifies the brokers (SSL, SASL_SSL; default: the system's)",
    )
    a(
        "--ssl-certificate-location",
        type=Path,
        metavar="FILE",
        help="client certificate for mutual TLS (with --ssl-key-location)",
    )
    a(
        "--ssl-key-location",
        type=Path,
        metavar="FILE",
        help="client key for mutual TLS (with --ssl-certificate-location; its password in "
        "FRAUDSTREAM_SSL_KEY_PASSWORD)",
    )


def next_offsets(msgs: list[Any]) -> list[TopicPartition]:
    """Per partition of ``msgs`` (consumed messages, in order), the offset to commit once they
    are done: the last one's plus one."""
    last: dict[tuple[str, int], int] = {}
    for m in msgs:
        last[(m.topic(), m.partition())] = m.offset()
    return [TopicPartition(t, p, o + 1) for (t, p), o in last.items()]
