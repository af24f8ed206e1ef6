"""The label worker with a slow seek after recovery, for the test of
``fraudstream.features.labels.faust_fixes``: ``python -m tests.integration.labels.slow_seek_worker
[flags]``.

``SLOW_SEEK_S`` seconds are added after faust's seek to the committed offsets, the moment
at which faust used to clear stream queues the fetcher was filling (faust-streaming/faust#596);
on this machine that seek takes milliseconds, in CI it once took 320 ms. ``UNFIXED_FAUST=1``
runs plain ``faust.App`` instead of the fixed one, to show the test fails without the fixes.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Mapping
from typing import Any

import faust
from faust.transport.consumer import Consumer

from fraudstream.features.labels import app as label_app
from fraudstream.features.labels.worker import main

_perform_seek = Consumer.perform_seek


async def _slow_perform_seek(self: Any) -> Mapping[Any, Any]:
    result: Mapping[Any, Any] = await _perform_seek(self)
    await asyncio.sleep(float(os.environ.get("SLOW_SEEK_S", "0")))
    queued = sum(queue.qsize() for queue in self.app.flow_control._queues)
    print(f"slow_seek_worker: {queued} events queued at the end of the seek", flush=True)
    return result


if __name__ == "__main__":
    Consumer.perform_seek = _slow_perform_seek  # type: ignore[method-assign]
    if os.environ.get("UNFIXED_FAUST") == "1":
        label_app.LabelFaustApp = faust.App  # type: ignore[misc]
    sys.exit(main())
