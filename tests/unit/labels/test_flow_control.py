"""The label worker's flow control (``fraudstream.features.labels.faust_fixes``): resuming flow that
already flows keeps the events queued; resuming after a suspension clears them, as faust's
does."""

from __future__ import annotations

import asyncio

from mode.utils.queues import FlowControlEvent, FlowControlQueue

from fraudstream.features.labels.faust_fixes import ResumeOnlyWhenSuspended


def _queued_after(flow: FlowControlEvent, suspend_first: bool) -> int:
    async def run() -> int:
        queue: FlowControlQueue[int] = FlowControlQueue(flow_control=flow, clear_on_resume=True)
        flow.resume()
        for i in range(5):
            queue.put_nowait(i)
        if suspend_first:
            flow.suspend()
        flow.resume()
        return queue.qsize()

    return asyncio.run(run())


def test_resuming_flowing_queues_keeps_their_events() -> None:
    assert _queued_after(ResumeOnlyWhenSuspended(), suspend_first=False) == 5


def test_resuming_after_a_suspension_clears_them() -> None:
    assert _queued_after(ResumeOnlyWhenSuspended(), suspend_first=True) == 0


def test_faust_own_flow_control_clears_flowing_queues() -> None:
    """What the fix is for (faust-streaming/faust#596): faust's clears them regardless."""
    assert _queued_after(FlowControlEvent(), suspend_first=False) == 0
