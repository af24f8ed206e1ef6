"""What the worker does with each batch of labels, free of faust: labels to the store (and
their failures to the dead-letter topic) and to the KPI join topic (decisions get there
through ``fraudstream.features.labels.forwarder``).

A batch is acknowledged by the caller only after ``handle_labels`` returned, i.e. after the
store write and every produce it started were acknowledged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from fraudstream.features.labels import records
from fraudstream.features.labels.applier import LabelWriter, decode_batch
from fraudstream.features.labels.deadletter import Header, Source, dead_letter_headers
from fraudstream.features.labels.freshness import LabelFreshness
from fraudstream.features.labels.metrics import LabelMetrics
from fraudstream.features.schema import Label

logger = logging.getLogger(__name__)

Send = Callable[
    [bytes | None, bytes | None, list[Header], int | None], Awaitable[Awaitable[object]]
]
"""Queue a message (key, value, headers, partition or None for the key's); the result
resolves once the broker has it."""


@dataclass(frozen=True)
class RawMessage:
    """A consumed message as the pipeline sees it (bytes untouched)."""

    key: bytes | None
    """Original key."""
    value: bytes | None
    """Original value."""
    headers: list[Header]
    """Original headers, in order."""
    source: Source
    """Where it was read."""


class LabelPipeline:
    """The steps of the worker's agents, given how to write and where to send."""

    def __init__(
        self,
        writer: LabelWriter,
        metrics: LabelMetrics,
        send_dlq: Send,
        send_join: Send,
        join_partitions: int,
        freshness: LabelFreshness | None = None,
    ) -> None:
        self._writer = writer
        self._metrics = metrics
        self._freshness = freshness
        self._send_dlq = send_dlq
        self._send_join = send_join
        self._join_partitions = join_partitions

    async def handle_labels(self, batch: Sequence[RawMessage]) -> None:
        """Dead-letter the malformed, write the rest to the store, feed them to the join."""
        decoded = decode_batch([m.value for m in batch])
        pending = []
        for pos, error in decoded.errors:
            msg = batch[pos]
            headers = dead_letter_headers(msg.headers, error, msg.source)
            logger.warning(
                "malformed label at %s[%d]@%d (%s): %s",
                msg.source.topic,
                msg.source.partition,
                msg.source.offset,
                error.code,
                error,
            )
            pending.append(await self._send_dlq(msg.key, msg.value, headers, None))
        labels = [label for _pos, label in decoded.labels]
        new = await self._writer.write(labels)
        pending += await self._forward([records.from_label(label) for label in labels])
        await asyncio.gather(*pending)
        self._metrics.received.inc(len(labels))
        self._metrics.applied.inc(new)
        for _pos, error in decoded.errors:
            self._metrics.dead_letters.labels(code=error.code).inc()
        self._note_applied(batch, decoded.labels)

    def _note_applied(self, batch: Sequence[RawMessage], labels: list[tuple[int, Label]]) -> None:
        """Tell the freshness tracker which partitions' labels reached the store."""
        if self._freshness is None:
            return
        times: dict[int, list[int]] = {}
        for pos, label in labels:
            times.setdefault(batch[pos].source.partition, []).append(label.label_time_ms)
        for partition, label_times in times.items():
            self._freshness.labels_applied(partition, label_times)

    async def _forward(self, join_records: Sequence[records.JoinRecord]) -> list[Awaitable[object]]:
        """Send ``join_records`` to the join topic, one message per partition."""
        return [
            await self._send_join(b"%d" % p, value, [], p)
            for p, value in join_messages(join_records, self._join_partitions)
        ]


def join_messages(
    join_records: Sequence[records.JoinRecord], partitions: int
) -> list[tuple[int, bytes]]:
    """``join_records`` as join topic messages: (partition, value), one per partition, each
    partition's records in their order."""
    parts: dict[int, list[records.JoinRecord]] = {}
    for record in join_records:
        parts.setdefault(records.partition_for(record.transaction_id, partitions), []).append(
            record
        )
    return [(p, records.encode(part)) for p, part in sorted(parts.items())]
