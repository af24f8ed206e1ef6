"""The label worker with one fault injected, for the tests of how it stops:
``FAULT=<fault> python -m tests.integration.labels.faulty_worker [flags]``.

- ``no-codecs``: ``cramjam`` (aiokafka's lz4, snappy and zstd codecs) cannot be imported, as
  on a machine without it; the start's codec check refuses to run.
- ``no-codecs-unchecked``: the same, with the start's check skipped, so the first compressed
  batch reaches aiokafka's fetcher and fails there (any error in the consumer's fetch takes
  this path).
- ``agent``: the labels agent raises on every batch (a bug, or a store error it cannot retry).

A module of its own, not a second virtual environment: the tests need the real worker, its
real faust and aiokafka, and one changed piece.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any


def _no_codec_check() -> None:
    return None


async def _failing_handle_labels(self: Any, batch: Sequence[Any]) -> None:
    raise RuntimeError(f"injected failure on a batch of {len(batch)} label(s)")


if __name__ == "__main__":
    fault = os.environ["FAULT"]
    if fault.startswith("no-codecs"):
        sys.modules["cramjam"] = None  # type: ignore[assignment]  # import cramjam -> ImportError
    from fraudstream.features.labels import pipeline, preflight
    from fraudstream.features.labels.worker import main

    if fault == "no-codecs-unchecked":
        preflight.check_codecs = _no_codec_check
    elif fault == "agent":
        pipeline.LabelPipeline.handle_labels = _failing_handle_labels  # type: ignore[method-assign]
    sys.exit(main())
