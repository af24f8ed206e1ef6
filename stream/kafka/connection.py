"""Kafka connection settings and the one place they become a librdkafka configuration dict."""

from __future__ import annotations

import logging
from typing import Any, Literal

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from pydantic import BaseModel, ConfigDict, SecretStr

from stream.exceptions import AuthenticationFailed, BrokerUnavailable

logger = logging.getLogger(__name__)

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]


class KafkaConnection(BaseModel):
    """Where the brokers are and how to authenticate; secrets are ``SecretStr``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    bootstrap_servers: str
    """Comma-separated ``host:port`` list."""
    security_protocol: SecurityProtocol = "PLAINTEXT"
    """librdkafka ``security.protocol``."""
    sasl_mechanism: str | None = None
    """e.g. ``SCRAM-SHA-256``, ``SCRAM-SHA-512``, ``PLAIN``."""
    sasl_username: str | None = None
    """SASL user name."""
    sasl_password: SecretStr | None = None
    """SASL password; never logged."""
    ssl_ca_location: str | None = None
    """CA bundle file for verifying the brokers."""
    ssl_certificate_location: str | None = None
    """Client certificate (mutual TLS)."""
    ssl_key_location: str | None = None
    """Client private key (mutual TLS)."""
    ssl_key_password: SecretStr | None = None
    """Password of the client private key; never logged."""

    def to_librdkafka(self) -> dict[str, Any]:
        """The librdkafka settings for these connection values (secrets revealed here only)."""
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
        conf.update({k: v for k, v in optional.items() if v is not None})
        return conf

    def redacted(self) -> dict[str, Any]:
        """The settings with every secret replaced, for logs."""
        return {k: ("***" if "password" in k else v) for k, v in self.to_librdkafka().items()}


def _reveal(secret: SecretStr | None) -> str | None:
    return None if secret is None else secret.get_secret_value()


def ensure_reachable(conn: KafkaConnection, timeout_s: float) -> int:
    """Return the number of brokers once one answers; raise a one-line error otherwise."""
    errors: list[KafkaError] = []
    conf = conn.to_librdkafka() | {
        "socket.connection.setup.timeout.ms": max(1000, int(timeout_s * 1000)),
        "error_cb": errors.append,
        "log_level": 0,
    }
    admin = AdminClient(conf)
    try:
        metadata = admin.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        admin.poll(0.5)  # error_cb runs only from poll(): a refused login is queued there
        _raise_auth(errors)
        msg = (
            f"no Kafka broker answered at {conn.bootstrap_servers} within {timeout_s:g} s "
            f"({exc.args[0].str() if exc.args else exc}); check --bootstrap-servers"
        )
        raise BrokerUnavailable(msg) from None
    admin.poll(0)
    _raise_auth(errors)
    return len(metadata.brokers)


def _raise_auth(errors: list[KafkaError]) -> None:
    for err in errors:
        if err.code() in (KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED):
            msg = f"Kafka authentication failed: {err.str()}; check the SASL/SSL settings"
            raise AuthenticationFailed(msg)
