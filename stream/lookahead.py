"""The next batch's store call on a helper thread while the loop finishes the batch before it.

Draining a backlog, serve's loop spent half its time waiting for the feature store's answer
(py-spy on a 200,000-record drain with the Redis store: 50 % of the loop's samples in the
socket read). When serve is behind by a full batch (``--max-batch`` records waiting) it now
decodes the next batch and hands its store call to a helper thread, then scores and emits
the batch before it meanwhile: Redis works while serve does, for as long as it is that far
behind. A stream that serve keeps up with takes the same path as before (each
batch start to finish in turn): overlapping would add the next batch's decoding and the
threads' hand-offs to each batch's latency, for throughput it does not need.

What keeps this exact:

- The store sees one call at a time, in batch order: the helper runs them one by one, and
  the loop touches the store itself (transactions applied late after an outage, marks of
  batches with nothing valid, the check at assignment) only while the helper is idle.
- Outputs are produced and offsets committed in input order: the batch ahead is finished
  (scored, emitted, its offsets handed to the delivery) before any later batch, and before
  the loop goes idle, hands partitions over on a revoke or stops.
- A batch ahead that is dropped (its transaction aborted, or serve stopping on an error)
  had its store call applied without its decisions going out. Its offsets were not
  committed, so its records come again, and the store answers them as redeliveries: the
  same rows, applied once (the store's idempotence, as after a crash).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import numpy as np
from confluent_kafka import TopicPartition

from fraudstream.features.schema import DecodeResult
from fraudstream.stream.bounded_call import BoundedCaller
from fraudstream.stream.pipeline import Features
from fraudstream.stream.planner import Plan


@dataclass
class Ahead:
    """A batch decoded, its store call on the helper thread, not yet scored."""

    msgs: list[Any]
    """The Kafka records."""
    arrival: np.ndarray
    """Wall ms at which each record's budget started."""
    fetched: np.ndarray
    """Wall ms at which the consumer handed each record over."""
    plan: Plan
    """The planner's plan, made when the batch was taken."""
    started: int
    """Wall ms at which the batch was taken."""
    decoded: DecodeResult
    """The valid transactions and the errors."""
    decode_ms: float
    """Time the decoding took."""
    offsets: list[TopicPartition]
    """The next offset of each partition the batch covers."""
    features: Future[object]
    """The store call's outcome (``Features``), or its error."""


class Lookahead:
    """The helper thread and the batch ahead (at most one)."""

    def __init__(self) -> None:
        self._caller = BoundedCaller(name="store-lookahead")
        self.batch: Ahead | None = None
        self.overlapped = 0
        """Batches whose store call ran while the loop finished the one before."""

    def submit(self, call: Callable[[], Features]) -> Future[object]:
        return self._caller.submit(call)

    def take(self) -> Ahead | None:
        """The batch ahead, now the caller's to finish (None: there is none)."""
        ahead, self.batch = self.batch, None
        return ahead

    @staticmethod
    def wait(ahead: Ahead) -> Features:
        """The batch's features once its store call is done (its error raised here)."""
        features = ahead.features.result()
        assert isinstance(features, Features)  # noqa: S101 - what Pipeline.features returns
        return features

    def drop(self) -> None:
        """Forget the batch ahead, once its store call is over (so that the store is the
        loop's again); its records come again (see the module docstring)."""
        ahead = self.take()
        if ahead is not None:
            with contextlib.suppress(Exception):  # its outcome goes nowhere
                ahead.features.result()

    def close(self) -> None:
        self._caller.stop()
