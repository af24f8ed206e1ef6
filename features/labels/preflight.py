"""Fail fast before faust starts: every compression codec Kafka uses can be decoded, and a
bootstrap server accepts a connection with the configured security.

faust (through aiokafka) retries a refused login forever and only logs why; this check turns
wrong credentials into one clear error and a non-zero exit, and waits a bounded time for
brokers that are still starting. aiokafka decodes lz4, snappy and zstd only with its optional
package ``cramjam``; without it the first such batch would stop the worker, maybe days later.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import ssl
import time
from typing import Any

from fraudstream.features.labels.credentials import broker_credentials
from fraudstream.features.labels.exceptions import (
    KafkaAuthenticationFailed,
    KafkaCodecMissing,
    KafkaUnreachable,
)
from fraudstream.features.labels.settings import LabelSettings

logger = logging.getLogger(__name__)

# aiokafka ships no type information: its modules are Any here, and only here
_errors: Any = importlib.import_module("aiokafka.errors")
_conn: Any = importlib.import_module("aiokafka.conn")
_codec: Any = importlib.import_module("aiokafka.codec")
AUTH_ERRORS: tuple[type[BaseException], ...] = (
    _errors.SaslAuthenticationFailed,
    _errors.AuthenticationFailedError,
    _errors.IllegalSaslStateError,
    _errors.UnsupportedSaslMechanismError,
    ssl.SSLError,
)
KAFKA_ERROR: type[BaseException] = _errors.KafkaError
RETRY_EVERY_S = 1.0


def missing_codecs() -> list[str]:
    """The compression codecs Kafka producers may use that aiokafka cannot decode here."""
    found = {
        "gzip": _codec.has_gzip(),
        "snappy": _codec.has_snappy(),
        "lz4": _codec.has_lz4(),
        "zstd": _codec.has_zstd(),
    }
    return [name for name, present in found.items() if not present]


def check_codecs() -> None:
    """Raise ``KafkaCodecMissing`` unless every Kafka compression codec can be decoded."""
    missing = missing_codecs()
    if missing:
        msg = (
            f"cannot decode {', '.join(missing)}-compressed Kafka messages: aiokafka's optional "
            "codec package cramjam>=2.8 is not installed; install fraudstream's dependencies "
            "(pip install -c constraints.txt -e .) or pip install 'aiokafka[lz4,snappy,zstd]'"
        )
        raise KafkaCodecMissing(msg)


def check_kafka(settings: LabelSettings) -> None:
    """Return once a broker accepted a connection; raise ``KafkaAuthenticationFailed`` at
    once on refused credentials, ``KafkaUnreachable`` after ``connect_timeout_s``."""
    asyncio.run(_check(settings, aiokafka_auth(settings)))


def aiokafka_auth(settings: LabelSettings) -> dict[str, Any]:
    """aiokafka's security arguments, mapped by faust's own function (the worker's mapping)."""
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    return dict(credentials_to_aiokafka_auth(broker_credentials(settings)))


async def _check(settings: LabelSettings, auth: dict[str, Any]) -> None:
    hosts = settings.hosts()
    deadline = time.monotonic() + settings.connect_timeout_s
    while True:
        problems = []
        for host in hosts:
            try:
                await _connect(host, auth, settings.connect_timeout_s)
                return
            except AUTH_ERRORS as exc:
                raise KafkaAuthenticationFailed(_auth_message(settings, host, exc)) from None
            except (OSError, TimeoutError, KAFKA_ERROR, ValueError) as exc:
                problems.append(f"{host}: {_describe(exc, settings)}")
        if time.monotonic() >= deadline:
            msg = (
                f"no Kafka broker answered within {settings.connect_timeout_s:g} s "
                f"({'; '.join(problems)}): check --bootstrap-servers and --security-protocol"
            )
            raise KafkaUnreachable(msg)
        logger.warning("Kafka not reachable yet (%s); retrying", "; ".join(problems))
        await asyncio.sleep(RETRY_EVERY_S)


async def _connect(host: str, auth: dict[str, Any], timeout_s: float) -> None:
    name, _, port = host.rpartition(":")
    if not name or not port.isdigit():
        msg = f"bootstrap server {host!r} is not host:port"
        raise ValueError(msg)
    timeout_ms = int(max(1.0, min(timeout_s, 10.0)) * 1000)
    conn = await asyncio.wait_for(
        _conn.create_conn(name, int(port), request_timeout_ms=timeout_ms, **auth),
        timeout_ms / 1000,
    )
    conn.close()


def _auth_message(settings: LabelSettings, host: str, exc: BaseException) -> str:
    who = f"user {settings.sasl_username!r} with {settings.sasl_mechanism}"
    if not settings.uses_sasl:
        who = "TLS"
    return (
        f"Kafka authentication failed at {host} ({settings.security_protocol}, {who}): "
        f"{_describe(exc, settings)}; check --sasl-username, the password "
        "(FRAUDSTREAM_SASL_PASSWORD or --sasl-password-file), --sasl-mechanism and the "
        "--ssl-* files"
    )


def _describe(exc: BaseException, settings: LabelSettings) -> str:
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    for secret in (settings.sasl_password, settings.ssl_key_password):
        if secret is not None and secret.get_secret_value():
            text = text.replace(secret.get_secret_value(), "***")
    return text
