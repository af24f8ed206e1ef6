"""Small hand-made transaction tables for the replay and backtest tests."""

from __future__ import annotations

import numpy as np
import pandas as pd

DAY_MS = 86_400_000
T0 = 1_522_540_800_000  # 2018-04-01T00:00:00Z


def table(n: int, span_ms: int, fraud_every: int = 0, seed: int = 0) -> pd.DataFrame:
    """``n`` transactions at sorted random times in ``[T0, T0 + span_ms)``, canonical columns;
    every ``fraud_every``-th one is a fraud (none when 0)."""
    rng = np.random.default_rng(seed)
    ms = np.sort(T0 + rng.integers(0, span_ms, size=n)).astype(np.int64)
    fraud = np.zeros(n, dtype=np.int8)
    if fraud_every:
        fraud[::fraud_every] = 1
    return pd.DataFrame(
        {
            "transaction_id": [f"tx{i:06d}" for i in range(n)],
            "event_time_ms": ms,
            "customer_id": [f"c{i % 37}" for i in range(n)],
            "terminal_id": [f"t{i % 53}" for i in range(n)],
            "amount": np.round(rng.uniform(1, 300, size=n), 2),
            "is_fraud": fraud,
        }
    )
