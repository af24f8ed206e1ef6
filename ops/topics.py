"""Create fraudstream's topics idempotently (existing topics are left as they are).

Usage: python ops/topics.py [--bootstrap 127.0.0.1:9092] [--partitions 6]
"""

from __future__ import annotations

import argparse
import sys

from confluent_kafka import KafkaError
from confluent_kafka.admin import AdminClient, NewTopic

TOPICS = (
    "transactions",
    "fraud.decisions",
    "fraud.alerts",
    "fraud.labels",
    "transactions.dlq",
    "fraud.labels.dlq",
    "fraud.shadow",
)


# A dead letter is its original plus a few headers: its topic accepts 64 KiB more than
# Kafka's default, so that whatever the input topics accepted is dead-lettered whole (serve
# and the label worker cut down, and mark, what still does not fit).
DEAD_LETTER_CONFIG = {"max.message.bytes": str(1_048_588 + 65_536)}
CONFIGS = {"transactions.dlq": DEAD_LETTER_CONFIG, "fraud.labels.dlq": DEAD_LETTER_CONFIG}


def create_topics(bootstrap: str, partitions: int, names: tuple[str, ...] = TOPICS) -> list[str]:
    """Create the missing topics; return the names that were created now."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    futures = admin.create_topics(
        [
            NewTopic(n, num_partitions=partitions, replication_factor=1, config=CONFIGS.get(n, {}))
            for n in names
        ],
        operation_timeout=30,
        request_timeout=30,
    )
    created = []
    for name, fut in futures.items():
        try:
            fut.result()
            created.append(name)
        except Exception as exc:  # KafkaException wrapping a KafkaError
            err = exc.args[0] if exc.args else None
            if isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            raise
    return created


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--partitions", type=int, default=6)
    args = parser.parse_args()
    if args.partitions < 1:
        print("error: --partitions must be at least 1", file=sys.stderr)
        return 2
    created = create_topics(args.bootstrap, args.partitions)
    existing = [n for n in TOPICS if n not in created]
    made, there = ", ".join(created) or "none", ", ".join(existing) or "none"
    print(f"topics created: {made}; already there: {there}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
