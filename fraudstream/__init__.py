"""fraudstream's public API: load a model from a registry, score transactions against a
feature store, read the decisions. The same path ``fraudstream serve`` runs for every
micro-batch, without Kafka::

    import fraudstream

    model = fraudstream.load_model("var/registry")        # CURRENT, on the CPU
    store = fraudstream.MemoryStore()                      # or RedisStore.from_url(url)
    [decision] = fraudstream.score(
        [{"transaction_id": "t1", "event_time": "2026-12-03T10:00:00Z",
          "customer_id": "c1", "terminal_id": "t9", "amount": 42.5}],
        model,
        store,
    )
    print(decision.decision, decision.score, decision.reasons)

Transactions follow the ``fraud.transactions`` contract (docs/DESIGN.md) as dicts or JSON
bytes and are validated as serve validates them; each one scored becomes history in the
store, as in serve. Decisions follow the ``fraud.decisions`` contract (``Decision``). The
commands (``fraudstream --help``) live in ``fraudstream.stream``, ``fraudstream.features``
and ``fraudstream.models``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson

from fraudstream.features.exceptions import (
    FeatureStoreUnavailable,
    FraudstreamError,
    InvalidTransaction,
)
from fraudstream.features.memory_store import MemoryStore
from fraudstream.features.redis_store import RedisStore
from fraudstream.features.schema import decode_transactions
from fraudstream.features.store import FeatureStore
from fraudstream.models.registry import Registry
from fraudstream.models.scorer import Scorer
from fraudstream.stream.decision import DECISIONS, Decision
from fraudstream.stream.pipeline import Pipeline
from fraudstream.stream.planner import Planner

__all__ = [
    "DECISIONS",
    "Decision",
    "FeatureStore",
    "FeatureStoreUnavailable",
    "FraudstreamError",
    "InvalidTransaction",
    "MemoryStore",
    "RedisStore",
    "Scorer",
    "load_model",
    "score",
]


def load_model(registry: str | Path, version: str | None = None, device: str = "cpu") -> Scorer:
    """The model ``version`` of the registry at ``registry`` (None: CURRENT), checked as
    serve checks it (file hash, feature set); ``device``: ``cpu``, ``auto``, ``cuda[:N]``."""
    return Scorer.load(Registry(Path(registry)), version, device)


def score(
    transactions: Iterable[Mapping[str, Any] | bytes],
    model: Scorer,
    store: FeatureStore,
) -> list[Decision]:
    """One decision per transaction, in order, on the full path: the store's point-in-time
    features, every tree of ``model``, its thresholds and reasons.

    Raises ``InvalidTransaction`` naming the first transaction that breaks the contract
    (nothing is scored or stored then), and ``FeatureStoreUnavailable`` when the store does
    not answer."""
    values = [t if isinstance(t, bytes) else orjson.dumps(dict(t)) for t in transactions]
    if not values:
        return []
    decoded = decode_transactions(values)
    if decoded.errors:
        position, error = decoded.errors[0]
        msg = f"transaction {position}: {error} ({error.code})"
        raise InvalidTransaction(error.code, msg, error.field)
    pipeline = Pipeline(store=store, model=lambda: model, planner=Planner(max_batch=len(values)))
    plan = pipeline.planner.plan(None, len(decoded.batch), has_model=True)
    result = pipeline.run(decoded.batch, plan)
    if result.rung is not None:  # the store failed: these would not be the model's decisions
        msg = f"the feature store did not answer; {len(values)} transaction(s) not scored"
        raise FeatureStoreUnavailable(msg)
    return result.decisions(None, None, int(time.time() * 1000))
