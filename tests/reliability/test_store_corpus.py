"""The decided corpus of ``tests.reliability.poison`` through the feature stores: every
record decodes, is applied, and carries the flags the corpus names (a private
redis-server and the in-process store alike)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from fraudstream.features.memory_store import MemoryStore
from fraudstream.features.redis_store import RedisStore
from fraudstream.features.schema import decode_transactions
from fraudstream.features.store import FeatureStore
from tests.infra import LocalRedis
from tests.reliability.poison import GOOD, decided_corpus

pytestmark = pytest.mark.reliability


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FeatureStore]:
    if request.param == "memory":
        yield MemoryStore()
        return
    server = LocalRedis(var=tmp_path / "redis")
    server.start()
    redis_store = RedisStore.from_url(server.url, prefix="corpus", chunk_size=2)
    try:
        yield redis_store
    finally:
        redis_store.close()
        server.stop()


def test_every_unusual_record_is_decided_with_its_flags(store: FeatureStore) -> None:
    now_ms = int(time.time() * 1000)
    corpus = decided_corpus(now_ms)
    decoded = decode_transactions([value for _, value, _ in corpus], now_ms=now_ms)
    assert decoded.errors == []
    assert len(decoded.batch) == len(corpus)
    # the stream is at GOOD's time (2018), as a reader's partition watermark says
    watermark = np.full(len(corpus), int(GOOD["event_time"]) // 1000)  # type: ignore[call-overload]
    vectors, flags = store.apply_flagged(decoded.batch, watermark_s=watermark)
    assert flags.tolist() == [expected for _, _, expected in corpus]
    np.testing.assert_array_equal(vectors[3], vectors[0])  # the first copy again
    assert vectors[1, 0] == 5000.0  # the conflicting copy, on its own amount
