"""A slow store is not a down store: Redis held busy for 300 ms at a time (a script of
another client) makes serve wait, late but with every feature, never deciding blind nor
backing off; a store that is down is covered by test_serve's Redis-down test."""

from __future__ import annotations

import threading
import time

import pandas as pd
import pytest
import redis

from fraudstream.models.registry import Registry
from tests.serving import ServeFactory, consume_all, decisions_of, produce, tx_payload

pytestmark = pytest.mark.integration

BUSY_MS = 300
BUSY = """
local t0 = redis.call('TIME')
local start = t0[1] * 1000000 + t0[2]
while true do
  local t = redis.call('TIME')
  if t[1] * 1000000 + t[2] - start > tonumber(ARGV[1]) * 1000 then return 1 end
end
"""


def test_replies_slower_than_the_budget_are_waited_for_not_taken_for_an_outage(
    serve_factory: ServeFactory,
    registry: Registry,
    history: pd.DataFrame,
    kafka_bootstrap: str,
    redis_url: str,
) -> None:
    serve = serve_factory(registry.root, extra=["--budget-ms", "50"])
    df = history.iloc[:1200]
    items = [(str(r.customer_id).encode(), tx_payload(r)) for r in df.itertuples()]
    done = threading.Event()
    busy_spells = []

    def hold_redis() -> None:
        client = redis.Redis.from_url(redis_url)
        while not done.is_set():
            client.eval(BUSY, 0, BUSY_MS)
            busy_spells.append(time.monotonic())
            time.sleep(0.5)

    holder = threading.Thread(target=hold_redis, daemon=True)
    holder.start()
    try:
        produce(kafka_bootstrap, serve.input, items, rate=300)
    finally:
        done.set()
        holder.join(10)
    out = decisions_of(consume_all(kafka_bootstrap, serve.decisions, len(df)))
    assert len(busy_spells) >= 5
    assert sorted(d["transaction_id"] for d in out) == sorted(df["transaction_id"].astype(str))
    assert {d["degraded"] for d in out} == {None}  # every decision with its features
    late = [d for d in out if d["latency_ms"]["total"] > BUSY_MS / 2]
    assert late, "the busy spells never delayed a decision: the test would prove nothing"
    assert "unavailable" not in serve.log_text()
