"""A read_committed consumer that notes when each decision becomes visible to it.

    python ops/bench/live_reader.py BOOTSTRAP TOPIC OUT

Reads TOPIC from its start until SIGTERM, then writes one line per message to OUT:
``<transaction_id> <epoch ms it was read>`` (in its own process, so that the bench's
producers do not delay its clock readings). Prints ``ready`` once assigned.
"""

from __future__ import annotations

import signal
import sys
import time
import uuid
from pathlib import Path

import orjson
from confluent_kafka import Consumer

from fraudstream.stream.kafka.consume import take_queued


def main(bootstrap: str, topic: str, out: Path) -> int:
    stop = False

    def finish(_signum: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, finish)
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"live-reader-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 5,
        }
    )
    ready = False

    def assigned(_consumer: Consumer, _parts: object) -> None:
        nonlocal ready
        ready = True

    consumer.subscribe([topic], on_assign=assigned)
    seen: list[tuple[bytes, int]] = []
    try:
        while not stop:
            # stamped as it arrives: consume(n, timeout) would hold what came until n
            # messages or the timeout (up to 50 ms more on every stamp)
            msgs = take_queued(consumer, 1000, 0.05)
            now = time.time_ns() // 1_000_000
            seen.extend((m.value(), now) for m in msgs if m.error() is None)
            if ready:
                print("ready", flush=True)
                ready = False
    finally:
        consumer.close()
    with out.open("w") as sink:
        for value, at in seen:
            sink.write(f"{orjson.loads(value)['transaction_id']} {at}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], Path(sys.argv[3])))
