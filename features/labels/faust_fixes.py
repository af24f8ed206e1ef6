"""The faust app class of the label worker: ``faust.App`` with two fixes that keep faust from
losing records around a recovery (every worker start and every rebalance ends with one).

1. **Resuming flow that already flows clears nothing.** ``FlowControlEvent.resume()`` always
   empties every stream's queue. ``Recovery.on_recovery_completed`` resumes the stream
   partitions, seeks them to the committed offsets (a round trip to the broker, during which
   the fetcher keeps filling the queues) and only then calls ``flow_control.resume()``, with
   flow already resumed since the changelog was read: whatever was fetched during the seek
   is thrown away while its offsets count as read. Those records are never processed until
   the next restart, and commits stall at the first of them (faust-streaming/faust#596, open
   upstream). CI caught it: a restarted label worker idle with 154 of 984 labels never
   stored, its seek 320 ms long. Here ``resume()`` clears the queues only when flow was
   suspended (a rebalance), which is what the clearing is for; faust clears them on revoke
   as well.
2. **The seek after a recovery positions every partition.** faust pauses a partition by
   leaving it out of what it asks aiokafka for, and drops the records of a paused partition
   that a fetch already in flight returns (``Consumer.getmany``), with aiokafka's position
   already past them; stale events in the queues are cleared at a rebalance the same way.
   faust counts on the seek to the committed offsets that ends every recovery to fetch them
   again, but aiokafka's ``seek_to_committed`` only seeks where an offset above 0 was
   committed. A partition the group has not committed yet (a fresh group, or a worker that
   scaled out or restarted before its first commit) keeps the advanced position and its
   dropped records are lost. Here such a partition goes where ``consumer_auto_offset_reset``
   says (earliest: its first offset), and one with 0 committed to 0.

Both keep the worker at-least-once: a record may be processed twice, never skipped, and the
label store is idempotent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import faust
from faust.transport.drivers import aiokafka as driver
from faust.types import TP
from mode.utils.objects import cached_property
from mode.utils.queues import FlowControlEvent


class ResumeOnlyWhenSuspended(FlowControlEvent):
    """``FlowControlEvent`` whose ``resume()`` leaves flowing queues alone (fix 1)."""

    def resume(self) -> None:
        if self.is_active():
            return
        super().resume()


async def seek_to_committed_or_reset(consumer: Any, reset: str) -> Mapping[Any, int | None]:
    """Seek every assigned partition of the aiokafka ``consumer`` to its committed offset,
    or, without one, where ``reset`` (``earliest``/``latest``) says (fix 2); returns the
    committed offsets (``None`` for none), as aiokafka's ``seek_to_committed`` does."""
    committed: Mapping[Any, int | None] = await consumer.seek_to_committed()
    for tp, offset in committed.items():
        if offset == 0:
            consumer.seek(tp, 0)
    unset = [tp for tp, offset in committed.items() if offset is None or offset < 0]
    if unset:
        if reset == "latest":
            await consumer.seek_to_end(*unset)
        else:
            await consumer.seek_to_beginning(*unset)
    return committed


class _ConsumerThread(driver.AIOKafkaConsumerThread):
    async def seek_to_committed(self) -> Mapping[TP, int]:
        # faust's annotation says int; aiokafka's values are None where nothing was committed
        result: Mapping[TP, int] = await self.call_thread(self._seek_in_thread)
        return result

    async def _seek_in_thread(self) -> Mapping[Any, int | None]:
        reset = str(self.app.conf.consumer_auto_offset_reset)
        return await seek_to_committed_or_reset(self._ensure_consumer(), reset)


class _Consumer(driver.Consumer):
    def _new_consumer_thread(self) -> _ConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _Transport(driver.Transport):
    Consumer = _Consumer


class LabelFaustApp(faust.App):
    """``faust.App`` with the two fixes above."""

    @cached_property
    def flow_control(self) -> FlowControlEvent:
        return ResumeOnlyWhenSuspended(loop=self.loop)

    def _new_transport(self) -> Any:
        return _Transport(self.conf.broker_consumer, self)
