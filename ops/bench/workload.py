"""The bench's input and model: one simulated transaction stream shared by every arm, and
one XGBoost model trained on a separate small simulated set and promoted in a registry."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import xgboost as xgb

from fraudstream.features.definitions import FEATURE_NAMES, TRANSACTION_LEVEL_NAMES, FeatureConfig
from fraudstream.features.offline import compute_features
from fraudstream.features.simulator import SimulatorConfig, simulate
from fraudstream.models import metrics
from fraudstream.models.manifest import (
    RUNG_PARTIAL,
    RUNG_TRUNCATED,
    Thresholds,
    TrainWindow,
    default_truncation,
)
from fraudstream.models.registry import Registry

logger = logging.getLogger(__name__)

TX_PER_DAY = 9_000
"""A little under what the default simulator world yields per day (about 9,800)."""
TRAIN_WORLD = SimulatorConfig(n_customers=1_000, n_terminals=2_000, n_days=40, seed=11)
TRAIN_PARAMS = {
    "objective": "binary:logistic",
    "tree_method": "hist",
    "max_depth": 6,
    "eta": 0.1,
    "seed": 1,
    "nthread": 2,
}
TRAIN_ROUNDS = 100
THRESHOLDS = Thresholds(review=0.2, decline=0.8)
"""The bench model's thresholds, on every rung (its decisions' shares are not what the
bench measures; its scores' quality is)."""
VALID_WORLD = SimulatorConfig(n_customers=1_000, n_terminals=2_000, n_days=20, seed=12)
"""Where the bench model's rungs are measured (a world it was not trained on)."""


@dataclass(frozen=True)
class Model:
    """The promoted model every arm uses."""

    registry: Path
    """Registry folder (CURRENT points at ``version``)."""
    version: str
    """Registered version."""
    booster: xgb.Booster
    """The same model in memory, for the naive arm."""


def simulate_stream(n: int, seed: int = 0) -> pd.DataFrame:
    """At least ``n`` simulated transactions in event-time order (default world sizes)."""
    days = max(2, int(np.ceil(n / TX_PER_DAY)) + 1)
    df = simulate(SimulatorConfig(n_days=days, seed=seed)).reset_index(drop=True)
    if len(df) < n:
        msg = f"simulated {len(df)} transactions, fewer than the {n} asked for"
        raise RuntimeError(msg)
    return df


def payloads(df: pd.DataFrame) -> list[tuple[bytes, bytes]]:
    """(key, value) per row: JSON transactions keyed by customer id."""
    cols = zip(
        df["transaction_id"].astype(str),
        df["event_time_ms"].astype(np.int64),
        df["customer_id"].astype(str),
        df["terminal_id"].astype(str),
        df["amount"].astype(float),
        strict=True,
    )
    return [
        (
            cust.encode(),
            orjson.dumps(
                {
                    "transaction_id": tid,
                    "event_time": int(ms),
                    "customer_id": cust,
                    "terminal_id": term,
                    "amount": amount,
                }
            ),
        )
        for tid, ms, cust, term, amount in cols
    ]


def train_and_register(root: Path) -> Model:
    """Train the bench model (hist, 100 trees of depth 6) and promote it in ``root``."""
    df = simulate(TRAIN_WORLD)
    x = compute_features(df, FeatureConfig()).astype(np.float32)
    dtrain = xgb.DMatrix(x, label=df["is_fraud"].to_numpy(), feature_names=list(FEATURE_NAMES))
    booster = xgb.train(TRAIN_PARAMS, dtrain, num_boost_round=TRAIN_ROUNDS)
    registry = Registry(root)
    version = registry.register(
        booster,
        feature_names=FEATURE_NAMES,
        schema_hash=FeatureConfig().schema_hash(),
        params={k: v for k, v in TRAIN_PARAMS.items() if k != "nthread"},
        train_window=TrainWindow("2018-04-01T00:00:00+00:00", "2018-05-11T00:00:00+00:00"),
        data_fingerprint=f"bench-simulated-{len(df)}",
        metrics=rung_metrics(booster),
        thresholds=THRESHOLDS,
        truncated_thresholds=THRESHOLDS,
        truncation_trees=default_truncation(TRAIN_ROUNDS),
        partial_thresholds=THRESHOLDS,
        device="cpu",
    )
    registry.promote(version)
    logger.info("bench model %s: %d trees on %d rows", version, TRAIN_ROUNDS, len(df))
    return Model(root, version, booster)


def rung_metrics(booster: xgb.Booster) -> dict[str, float | None]:
    """Average precision of each rung of the ladder on a world the model never saw, as the
    manifest records them for the planner (``validation_average_precision[_<rung>]``)."""
    df = simulate(VALID_WORLD)
    x = compute_features(df, FeatureConfig()).astype(np.float32)
    y = df["is_fraud"].to_numpy().astype(bool)
    blind = x.copy()
    blind[:, len(TRANSACTION_LEVEL_NAMES) :] = np.nan
    trees = default_truncation(TRAIN_ROUNDS)
    scores = {
        "": booster.inplace_predict(x),
        f"_{RUNG_TRUNCATED}": booster.inplace_predict(x, iteration_range=(0, trees)),
        f"_{RUNG_PARTIAL}": booster.inplace_predict(blind),
    }
    return {
        f"validation_average_precision{suffix}": metrics.average_precision(
            y, np.asarray(values, dtype=np.float64)
        )
        for suffix, values in scores.items()
    }


class Feed:
    """The simulated stream as payloads: the first ``n`` are the shared backlog, later
    arms ``take`` fresh transactions (new ids) that continue it in event time."""

    def __init__(self, n: int) -> None:
        self.df = simulate_stream(n)
        self.items = payloads(self.df.iloc[:n])
        self.n = n
        self._cursor = n
        self._spare: list[tuple[bytes, bytes]] = []

    def labels(self, transaction_ids: list[str]) -> np.ndarray:
        """``is_fraud`` of the given transactions (any handed out so far)."""
        known = pd.Series(
            self.df["is_fraud"].to_numpy(), index=self.df["transaction_id"].astype(str)
        )
        return known.loc[transaction_ids].to_numpy().astype(bool)

    def backlog(self) -> list[tuple[bytes, bytes]]:
        return self.items[: self.n]

    def take(self, k: int) -> list[tuple[bytes, bytes]]:
        """The next ``k`` transactions after everything handed out so far."""
        while len(self.df) - self._cursor < k:
            self._extend()
        part = self.df.iloc[self._cursor : self._cursor + k]
        self._cursor += k
        return payloads(part)

    def _extend(self) -> None:
        seed = int(self.df.attrs.get("seed", 0)) + 1
        more = simulate_stream(max(self.n, 100_000), seed=seed)
        shift = int(self.df["event_time_ms"].max()) + 1000 - int(more["event_time_ms"].min())
        more["event_time_ms"] += shift
        more["transaction_id"] = [f"s{seed}-{t}" for t in more["transaction_id"]]
        self.df = pd.concat([self.df, more], ignore_index=True)
        self.df.attrs["seed"] = seed
