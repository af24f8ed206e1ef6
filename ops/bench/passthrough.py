"""The Kafka path alone: serve's own consumer and producer settings, no work in between.

Run by the ``latency`` step beside serve (``serve_arms.latency_floor``): each record is
copied to the output topic, stamped (like a decision's ``scored_at``) with the wall time at
which this loop had it, so output timestamp minus input timestamp is what the broker path
and a consumer with serve's fetch settings cost before any scoring starts. The loop takes
what is queued as serve's does (``take_queued``), and commits (asynchronously, for the same
broker traffic) at serve's default interval.

    passthrough.py BOOTSTRAP INPUT OUTPUT GROUP

Runs until SIGTERM, then waits for what it copied to be acknowledged.
"""

from __future__ import annotations

import signal
import sys
import time

from confluent_kafka import Consumer, Producer

from fraudstream.stream.kafka.clients import consumer_config, producer_config
from fraudstream.stream.kafka.consume import take_queued
from fraudstream.stream.settings import ServeSettings

BATCH = 2048


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    bootstrap, source, target, group = argv
    # serve's defaults (budget, fetch wait and size, commit interval) as serve derives them
    settings = ServeSettings(
        bootstrap_servers=bootstrap, redis_url="redis://unused", registry="unused"
    )
    conn = settings.kafka()
    consumer = Consumer(
        consumer_config(
            conn,
            group,
            fetch_wait_ms=settings.effective_fetch_wait_ms(),
            fetch_min_bytes=settings.fetch_min_bytes,
        )
    )
    producer = Producer(producer_config(conn))
    stopping: list[bool] = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    consumer.subscribe([source])
    interval_s = settings.commit_interval_ms / 1e3
    commit_at = time.monotonic() + interval_s
    while not stopping:
        msgs = take_queued(consumer, BATCH, 0.1)
        now_ms = int(time.time() * 1000)
        for msg in msgs:
            if msg.error() is None:
                producer.produce(target, msg.value(), msg.key(), timestamp=now_ms)
        producer.poll(0)
        if msgs and time.monotonic() >= commit_at:
            consumer.commit(asynchronous=True)
            commit_at = time.monotonic() + interval_s
    left = producer.flush(60)
    consumer.close()
    return 1 if left else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
