"""Smoke round trip: one transaction through the real broker and Redis (`make smoke`).

`make demo` runs it first, so a broken broker or Redis shows before anything else.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid

import orjson
import redis
from confluent_kafka import Consumer, Producer, TopicPartition


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--topic", default="transactions")
    args = parser.parse_args()

    tx = {
        "transaction_id": f"demo-{uuid.uuid4().hex[:8]}",
        "event_time": int(time.time() * 1000),
        "customer_id": "c-demo",
        "terminal_id": "t-demo",
        "amount": 42.0,
    }
    producer = Producer({"bootstrap.servers": args.bootstrap, "enable.idempotence": True})
    delivered: list[tuple[int, int]] = []
    producer.produce(
        args.topic,
        key=tx["customer_id"].encode(),
        value=orjson.dumps(tx),
        on_delivery=lambda err, msg: (
            delivered.append((msg.partition(), msg.offset()))
            if err is None
            else print(f"delivery failed: {err}", file=sys.stderr)
        ),
    )
    producer.flush(30)
    if not delivered:
        print("error: the smoke transaction was not delivered", file=sys.stderr)
        return 1
    partition, offset = delivered[0]
    print(f"produced {tx['transaction_id']} to {args.topic}[{partition}] at offset {offset}")

    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": f"demo-{uuid.uuid4()}",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(args.topic, partition, offset)])
    msg = consumer.poll(15)
    consumer.close()
    if msg is None or msg.error() or orjson.loads(msg.value()) != tx:
        print("error: could not read the smoke transaction back", file=sys.stderr)
        return 1
    print(f"consumed it back from {args.topic}[{partition}] at offset {msg.offset()}")

    client = redis.Redis.from_url(args.redis_url, socket_timeout=5)
    key = f"fraudstream:demo:{tx['transaction_id']}"
    client.set(key, msg.value(), ex=60)
    assert client.get(key) == msg.value()
    print(f"stored and read it back from Redis at {args.redis_url} (key {key})")
    print("smoke round trip ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
