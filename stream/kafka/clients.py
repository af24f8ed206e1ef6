"""librdkafka configurations for serve's consumer and producers (the only place they live)."""

from __future__ import annotations

from typing import Any

from fraudstream.features.kafka import KafkaConnection


def consumer_config(
    conn: KafkaConnection,
    group_id: str,
    *,
    fetch_wait_ms: int,
    fetch_min_bytes: int,
    **overrides: Any,
) -> dict[str, Any]:
    """A consumer that commits explicitly, reads committed data only, and rebalances
    cooperatively so that scaling out moves only the partitions that must move. The broker
    answers a fetch once ``fetch_min_bytes`` are there or after ``fetch_wait_ms``: serve
    passes a few KiB and a fraction of its budget, so that at a steady rate records come in
    batches of tens rather than one fetch (and one scoring pass) every few records."""
    return (
        conn.to_librdkafka()
        | {
            "group.id": group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "partition.assignment.strategy": "cooperative-sticky",
            "fetch.wait.max.ms": fetch_wait_ms,
            "fetch.min.bytes": fetch_min_bytes,
            "queued.max.messages.kbytes": 16_384,
            # the broker's least: a crashed member's partitions move on 6 s after it died
            "session.timeout.ms": 6_000,
            "heartbeat.interval.ms": 1_000,
            "max.poll.interval.ms": 120_000,
            "enable.partition.eof": False,
        }
        | overrides
    )


def producer_config(
    conn: KafkaConnection, transactional_id: str | None = None, **overrides: Any
) -> dict[str, Any]:
    """An idempotent producer (transactional when an id is given), tuned for low latency."""
    conf = conn.to_librdkafka() | {
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 1,
        "retry.backoff.ms": 10,
        "retry.backoff.max.ms": 200,
        "queue.buffering.max.kbytes": 65_536,
    }
    if transactional_id is not None:
        conf |= {"transactional.id": transactional_id, "transaction.timeout.ms": 60_000}
    return conf | overrides
