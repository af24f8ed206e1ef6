"""Decoding a batch of label messages and writing the good ones to the online store, retrying
with backoff while the store is unavailable (the caller acks only after ``write`` returns)."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from fraudstream.features.exceptions import FeatureStoreUnavailable, InvalidLabel
from fraudstream.features.schema import Label, decode_label

logger = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]


class LabelStore(Protocol):
    """What the pipeline needs from a feature store."""

    def apply_labels(self, labels: Sequence[Label]) -> int:
        """Record labels; returns how many were new."""
        ...


@dataclass(frozen=True)
class DecodedBatch:
    """A batch of label messages split into records and failures, by input position."""

    labels: list[tuple[int, Label]] = field(default_factory=list)
    """(position, label) for every valid message."""
    errors: list[tuple[int, InvalidLabel]] = field(default_factory=list)
    """(position, error) for every malformed message."""


def decode_batch(values: Sequence[bytes | None]) -> DecodedBatch:
    """Decode every value; never raises for bad input."""
    out = DecodedBatch()
    for pos, value in enumerate(values):
        try:
            out.labels.append((pos, decode_label(value)))
        except InvalidLabel as exc:
            out.errors.append((pos, exc))
    return out


@dataclass
class Backoff:
    """Exponential backoff with full jitter: ``initial_s`` doubling up to ``max_s``."""

    initial_s: float = 0.1
    """First wait."""
    max_s: float = 5.0
    """Longest wait."""
    attempt: int = 0
    """Failures so far."""

    def next_wait(self) -> float:
        ceiling = min(self.max_s, self.initial_s * 2.0**self.attempt)
        self.attempt += 1
        return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not crypto


class LabelWriter:
    """Writes labels to the store, retrying until it succeeds (or the task is cancelled)."""

    def __init__(
        self,
        store: LabelStore,
        initial_s: float = 0.1,
        max_s: float = 5.0,
        sleep: Sleep = asyncio.sleep,
        on_retry: Callable[[], None] | None = None,
    ) -> None:
        self._store = store
        self._initial_s = initial_s
        self._max_s = max_s
        self._sleep = sleep
        self._on_retry = on_retry or (lambda: None)

    async def write(self, labels: Sequence[Label]) -> int:
        """Apply ``labels``; returns how many were new. Retries on ``FeatureStoreUnavailable``
        with backoff; any other error propagates (the worker must stop, not skip)."""
        if not labels:
            return 0
        backoff = Backoff(self._initial_s, self._max_s)
        while True:
            try:
                return await asyncio.to_thread(self._store.apply_labels, labels)
            except FeatureStoreUnavailable as exc:
                self._on_retry()
                wait = backoff.next_wait()
                logger.warning(
                    "store unavailable, %d label(s) held, retry %d in %.2f s: %s",
                    len(labels),
                    backoff.attempt,
                    wait,
                    exc,
                )
                await self._sleep(wait)
