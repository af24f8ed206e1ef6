"""The faust arm: a faust-streaming agent that enriches each event from the Redis feature
store (one ``RedisStore.apply`` per event), scores it with XGBoost and sends a decision.

    BENCH_FAUST_APP=... BENCH_FAUST_BROKER=kafka://127.0.0.1:9092 BENCH_FAUST_INPUT=...
    BENCH_FAUST_OUTPUT=... BENCH_FAUST_REDIS_URL=... BENCH_FAUST_PREFIX=...
    BENCH_FAUST_MODEL=<registry>/<version>/model.ubj python ops/bench/faust_agent.py worker

In-memory table store, no web server; the way a Faust tutorial would write it.
"""

from __future__ import annotations

import os
import time

import faust
import numpy as np
import orjson
import xgboost as xgb

from fraudstream.features.batch import TransactionBatch
from fraudstream.features.definitions import FEATURE_NAMES
from fraudstream.features.redis_store import RedisStore

ENV = os.environ
app = faust.App(
    ENV.get("BENCH_FAUST_APP", "bench-faust"),
    broker=ENV.get("BENCH_FAUST_BROKER", "kafka://127.0.0.1:9092"),
    store="memory://",
    autodiscover=False,
    web_enabled=False,
    consumer_auto_offset_reset="earliest",
    topic_replication_factor=1,
)
source = app.topic(
    ENV.get("BENCH_FAUST_INPUT", "transactions"),
    key_type=bytes,
    value_type=bytes,
    key_serializer="raw",
    value_serializer="raw",
)
sink = app.topic(
    ENV.get("BENCH_FAUST_OUTPUT", "bench-faust-out"),
    key_type=bytes,
    value_type=bytes,
    key_serializer="raw",
    value_serializer="raw",
)
store = RedisStore.from_url(
    ENV.get("BENCH_FAUST_REDIS_URL", "redis://127.0.0.1:6379/0"),
    prefix=ENV.get("BENCH_FAUST_PREFIX", "bench-faust"),
)
booster = xgb.Booster(model_file=ENV["BENCH_FAUST_MODEL"]) if "BENCH_FAUST_MODEL" in ENV else None
REVIEW = float(ENV.get("BENCH_FAUST_REVIEW", "0.2"))
DECLINE = float(ENV.get("BENCH_FAUST_DECLINE", "0.8"))


@app.agent(source)
async def score(stream: faust.Stream) -> None:
    async for key, value in stream.items():
        await sink.send(key=key, value=decide(orjson.loads(value)))


def decide(tx: dict[str, object]) -> bytes:
    """Features for one transaction from Redis, one XGBoost prediction, the decision JSON."""
    batch = TransactionBatch.from_columns(
        [str(tx["transaction_id"])],
        [str(tx["customer_id"])],
        [str(tx["terminal_id"])],
        [tx["event_time"]],
        [tx["amount"]],
    )
    row = store.apply(batch).astype(np.float32)
    assert booster is not None, "BENCH_FAUST_MODEL must name the model file"
    p = float(booster.predict(xgb.DMatrix(row, feature_names=list(FEATURE_NAMES)))[0])
    label = "decline" if p >= DECLINE else "review" if p >= REVIEW else "approve"
    return orjson.dumps(
        {
            "transaction_id": tx["transaction_id"],
            "customer_id": tx["customer_id"],
            "score": p,
            "decision": label,
            "scored_at": int(time.time() * 1000),
        }
    )


if __name__ == "__main__":
    app.main()
