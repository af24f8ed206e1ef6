"""Block until a Kafka broker answers admin requests, or fail after a timeout.

Ready means: metadata lists a broker, and a group coordinator answers (the first
FindCoordinator creates ``__consumer_offsets``; on a fresh broker that takes seconds, which
would otherwise land on the first consumer group to commit). Real protocol round trips,
never a fixed sleep.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from confluent_kafka.admin import AdminClient


def _alive(pid: int | None) -> bool:
    if pid is None:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _coordinator_answers(admin: AdminClient) -> bool:
    """Describing an unknown group needs its coordinator: raises until one answers."""
    probe = "fraudstream-ready-probe"
    admin.describe_consumer_groups([probe], request_timeout=2.0)[probe].result()
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--timeout", type=float, default=90.0)
    parser.add_argument("--pid", type=int, default=None)
    parser.add_argument("--sasl", action="store_true")
    args = parser.parse_args()
    conf = {"bootstrap.servers": args.bootstrap, "log_level": 0, "socket.timeout.ms": 2000}
    if args.sasl:
        conf |= {
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "SCRAM-SHA-256",
            "sasl.username": os.environ.get("KAFKA_SASL_USER", "fraudstream"),
            "sasl.password": os.environ.get("KAFKA_SASL_PASSWORD", "fraudstream-secret"),
        }
    admin = AdminClient(conf)
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        if not _alive(args.pid):
            print(f"error: the broker process {args.pid} exited during start-up", file=sys.stderr)
            return 1
        try:
            if admin.list_topics(timeout=2.0).brokers and _coordinator_answers(admin):
                return 0
        except Exception:  # noqa: S110 - any failure here just means "not ready yet"
            pass
        time.sleep(0.25)
    print(
        f"error: no Kafka broker answered at {args.bootstrap} within {args.timeout:.0f} s",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
