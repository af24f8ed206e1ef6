"""The broker's message size limits, read at start so the producer can match them."""

from __future__ import annotations

import logging
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin import ConfigResource as _Resource  # type: ignore[attr-defined]

from fraudstream.features.kafka import KafkaConnection

logger = logging.getLogger(__name__)

LIBRDKAFKA_DEFAULT = 1_000_000
"""librdkafka's own ``message.max.bytes``."""
BROKER_DEFAULT = 1_048_588
"""Kafka's default ``message.max.bytes`` (what a topic accepts unless configured)."""


def max_message_bytes(conn: KafkaConnection, topic: str, timeout_s: float = 10.0) -> int:
    """The largest record batch ``topic`` accepts: its ``max.message.bytes``, else (topic not
    created yet) the broker's ``message.max.bytes``, else Kafka's default, with a warning
    (e.g. an ACL without DescribeConfigs)."""
    admin = AdminClient(conn.to_librdkafka() | {"log_level": 0})
    try:
        value = _describe(admin, _Resource("topic", topic), "max.message.bytes", timeout_s)
        if value is None:
            brokers = admin.list_topics(timeout=timeout_s).brokers
            broker = _Resource("broker", str(min(brokers)))
            value = _describe(admin, broker, "message.max.bytes", timeout_s)
    except (KafkaException, ValueError) as exc:
        logger.warning(
            "size limit of topic %s not read (%s); assuming Kafka's default %d bytes",
            topic,
            exc,
            BROKER_DEFAULT,
        )
        return BROKER_DEFAULT
    return BROKER_DEFAULT if value is None else value


def _describe(admin: AdminClient, resource: Any, name: str, timeout_s: float) -> int | None:
    future = admin.describe_configs([resource], request_timeout=timeout_s)[resource]
    try:
        entries = future.result(timeout=timeout_s)
    except KafkaException as exc:
        if "UNKNOWN_TOPIC" in str(exc.args[0]):
            return None
        raise
    entry = entries.get(name)
    return None if entry is None or entry.value is None else int(entry.value)
