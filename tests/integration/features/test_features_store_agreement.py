"""Both online stores, fed in event-time order with labels at event time + delay, give
exactly the offline features on a simulated dataset (about 40 days, 1,000 customers)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest

from fraudstream.features.definitions import FEATURE_NAMES
from fraudstream.features.memory_store import MemoryStore
from fraudstream.features.offline import compute_features
from fraudstream.features.redis_store import RedisStore
from fraudstream.features.replay import replay
from fraudstream.features.simulator import SimulatorConfig, simulate
from fraudstream.features.store import FeatureStore

pytestmark = pytest.mark.integration

COUNTS = [i for i, name in enumerate(FEATURE_NAMES) if "_nb_tx_" in name]
RATIOS = [i for i, n in enumerate(FEATURE_NAMES) if "_avg_" in n or "_risk_" in n or "_ratio_" in n]
SET_4 = list(range(18, len(FEATURE_NAMES)))
"""Feature set 4's columns: the customer's maximum amount, the terminal fraud ages."""


@pytest.fixture(scope="module")
def dataset() -> pd.DataFrame:
    return simulate(SimulatorConfig(n_customers=1000, n_terminals=2000, n_days=40, seed=11))


@pytest.fixture(scope="module")
def offline(dataset: pd.DataFrame) -> np.ndarray:
    return compute_features(dataset)


@pytest.fixture(params=["memory", "redis"])
def store(
    request: pytest.FixtureRequest, redis_url: str, store_prefix: str
) -> Iterator[FeatureStore]:
    if request.param == "memory":
        yield MemoryStore()
        return
    redis_store = RedisStore.from_url(redis_url, prefix=store_prefix)
    yield redis_store
    redis_store.drop()
    redis_store.close()


def test_store_equals_offline_on_every_feature(
    store: FeatureStore, dataset: pd.DataFrame, offline: np.ndarray
) -> None:
    assert len(dataset) > 70_000
    assert int(dataset["is_fraud"].sum()) > 500
    online = replay(store, dataset, batch_size=512)
    assert online.shape == offline.shape == (len(dataset), len(FEATURE_NAMES))
    assert np.array_equal(online[:, COUNTS], offline[:, COUNTS])
    assert np.array_equal(online[:, :3], offline[:, :3])
    np.testing.assert_allclose(online[:, RATIOS], offline[:, RATIOS], rtol=1e-9, atol=0)
    # the maximum and the ages come from exact integers in every store: the same doubles
    assert np.array_equal(online[:, SET_4], offline[:, SET_4], equal_nan=True)
    assert (np.isfinite(online[:, SET_4]).sum(axis=0) > [60_000, 5_000, 5_000]).all()
    # the comparison is not vacuous: windows are populated and risks are non-zero
    assert online[:, FEATURE_NAMES.index("customer_nb_tx_30d")].max() >= 50
    assert (online[:, FEATURE_NAMES.index("terminal_risk_30d")] > 0).sum() > 1000
