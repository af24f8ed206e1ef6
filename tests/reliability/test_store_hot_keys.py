"""Issue 24, finding 2: a hot key costs Redis a small multiple of what any key does,
however long its history (it grew with the history), on a private redis-server whose CPU
time is read before and after."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import redis

from fraudstream.features.batch import TransactionBatch
from fraudstream.features.redis_store import RedisStore
from fraudstream.features.simulator import SimulatorConfig, simulate
from tests.infra import LocalRedis

pytestmark = pytest.mark.reliability

HOT = 12_000
"""Transactions of the hot customer and terminal: 290 KB and 96 KB of history."""


def _cpu_s(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def _last_quarter_us_per_tx(store: RedisStore, client: redis.Redis, df: pd.DataFrame) -> float:
    batch = TransactionBatch.from_columns(
        df["transaction_id"].tolist(),
        df["customer_id"].tolist(),
        df["terminal_id"].tolist(),
        df["event_time_ms"].to_numpy(),
        df["amount"].to_numpy(),
    )
    start = 3 * len(batch) // 4
    for lo in range(0, start, 64):
        store.apply(batch.take(range(lo, min(lo + 64, start))))
    before = _cpu_s(client)
    for lo in range(start, len(batch), 64):
        store.apply(batch.take(range(lo, min(lo + 64, len(batch)))))
    return (_cpu_s(client) - before) / (len(batch) - start) * 1e6


def test_a_hot_key_costs_a_small_multiple_of_any_key(tmp_path: Path) -> None:
    server = LocalRedis(var=tmp_path / "redis")
    server.start()
    client = redis.Redis.from_url(server.url)
    try:
        df = simulate(SimulatorConfig(n_customers=3000, n_terminals=6000, n_days=6, seed=7))
        df = df.head(2 * HOT).reset_index(drop=True)
        hot = df.copy()
        hot.loc[hot.index % 2 == 0, ["customer_id", "terminal_id"]] = "hot"
        normal_us = _last_quarter_us_per_tx(
            RedisStore.from_url(server.url, prefix="normal", socket_timeout_s=60), client, df
        )
        hot_us = _last_quarter_us_per_tx(
            RedisStore.from_url(server.url, prefix="hot", socket_timeout_s=60), client, hot
        )
        # every other transaction reads a 9,000-record customer history and a 12,000-record
        # terminal one: read whole, that cost 20x the normal keys (313 vs 15 us here); read
        # by blocks, 2-2.5x
        assert int(client.strlen("hot:{c:hot}:h")) > 200_000
        assert hot_us < 4 * normal_us, (hot_us, normal_us)
    finally:
        client.close()
        server.stop()
