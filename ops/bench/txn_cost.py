"""What one Kafka transaction costs on this broker, with nothing else of fraudstream around it.

Each transaction does what one of serve's does at 2,000/s: begin, 24 decisions over the 6
partitions of one topic and 3 alerts on another, the consumer offsets of 6 input partitions
sent into it, commit. Prints the time per transaction (after a warm-up), the floor under
what exactly-once adds to a decision's visible latency.

    .venv/bin/python ops/bench/txn_cost.py --bootstrap 127.0.0.1:9092 [--n 300]
"""

from __future__ import annotations

import argparse
import time
import uuid

import numpy as np
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

PARTITIONS = 6
WARM_UP = 20


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bootstrap", default="127.0.0.1:9092")
    p.add_argument("--n", type=int, default=300, help="transactions (the first 20 not counted)")
    p.add_argument("--pause-ms", type=float, default=5.0, help="pause between transactions")
    args = p.parse_args(argv)
    run = uuid.uuid4().hex[:8]
    topics = [f"txn-cost-{run}-{role}" for role in ("in", "out", "alerts")]
    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    created = admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in topics])
    for future in created.values():
        future.result()
    try:
        ms = _transactions(args.bootstrap, run, topics, args.n, args.pause_ms / 1e3)
    finally:
        admin.delete_topics(topics)
    pct = np.percentile(ms, [50, 90, 99])
    print(
        f"{len(ms)} transactions: p50 {pct[0]:.1f} ms, p90 {pct[1]:.1f} ms, "
        f"p99 {pct[2]:.1f} ms, mean {ms.mean():.1f} ms"
    )
    return 0


def _transactions(
    bootstrap: str, run: str, topics: list[str], n: int, pause_s: float
) -> np.ndarray:
    source, out, alerts = topics
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"txn-cost-{run}", "enable.auto.commit": False}
    )
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "transactional.id": f"txn-cost-{run}",
            "linger.ms": 1,
            "retry.backoff.ms": 3,  # serve's setting
        }
    )
    producer.init_transactions(30)
    value, taken, offset = b"x" * 300, [], 0
    try:
        for _ in range(n):
            started = time.perf_counter()
            producer.begin_transaction()
            for k in range(24):
                producer.produce(out, key=str(k).encode(), value=value, partition=k % PARTITIONS)
                if k % 8 == 0:
                    producer.produce(alerts, value=value, partition=k % PARTITIONS)
            offset += 24
            marks = [TopicPartition(source, q, offset) for q in range(PARTITIONS)]
            producer.send_offsets_to_transaction(marks, consumer.consumer_group_metadata(), 30)
            producer.commit_transaction(30)
            taken.append((time.perf_counter() - started) * 1e3)
            time.sleep(pause_s)
    finally:
        consumer.close()
    return np.asarray(taken[WARM_UP:])


if __name__ == "__main__":
    raise SystemExit(main())
