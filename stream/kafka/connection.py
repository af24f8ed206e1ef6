"""Whether the brokers answer, with the connection's credentials (the connection itself is
``fraudstream.features.kafka.KafkaConnection``)."""

from __future__ import annotations

import logging

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from fraudstream.features.kafka import KafkaConnection
from fraudstream.stream.exceptions import AuthenticationFailed, BrokerUnavailable

logger = logging.getLogger(__name__)


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
