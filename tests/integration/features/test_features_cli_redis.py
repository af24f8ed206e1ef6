"""``features compute --store redis`` against a real Redis."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import redis

from fraudstream.features import cli
from fraudstream.features.datafile import write_transactions
from fraudstream.features.definitions import FEATURE_NAMES
from fraudstream.features.offline import compute_features
from fraudstream.features.simulator import SimulatorConfig, simulate

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("customer_state", ["redis", "local"])
def test_compute_through_redis_equals_offline_and_cleans_up(
    tmp_path: Path, redis_url: str, store_prefix: str, raw_redis: redis.Redis, customer_state: str
) -> None:
    df = simulate(SimulatorConfig(n_customers=60, n_terminals=120, n_days=25, seed=8))
    data = write_transactions(df, tmp_path / "data.jsonl")
    out = tmp_path / "features.parquet"
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(
        [
            "features",
            "compute",
            "--data",
            str(data),
            "--out",
            str(out),
            "--store",
            "redis",
            "--redis",
            redis_url,
            "--prefix",
            store_prefix,
            "--batch-size",
            "64",
            "--customer-state",
            customer_state,
        ]
    )
    assert args.func(args) == 0
    got = pd.read_parquet(out)
    np.testing.assert_allclose(
        got[list(FEATURE_NAMES)].to_numpy(), compute_features(df), rtol=1e-12
    )
    assert list(raw_redis.scan_iter(match=f"{store_prefix}:*")) == []
