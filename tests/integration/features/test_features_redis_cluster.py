"""The Redis store on a real 3-master Redis Cluster: same features as offline, idempotent
halves (a crash between them included), labels, offsets marks, keys on several nodes."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
import redis

from fraudstream.features.batch import TransactionBatch
from fraudstream.features.definitions import DAY_S, FEATURE_NAMES
from fraudstream.features.memory_store import MemoryStore
from fraudstream.features.offline import compute_features
from fraudstream.features.redis_batches import numbers_of
from fraudstream.features.redis_scripts import TTL_REFRESH_S
from fraudstream.features.redis_store import RedisStore
from fraudstream.features.replay import replay
from fraudstream.features.schema import Label
from fraudstream.features.simulator import SimulatorConfig, simulate
from fraudstream.features.store import fingerprints
from tests.cluster_infra import LocalCluster, redis_cluster  # noqa: F401 (fixture)

pytestmark = pytest.mark.integration

T0 = 1_522_540_800_000
COUNTS = [i for i, name in enumerate(FEATURE_NAMES) if "_nb_tx_" in name]
RATIOS = [i for i, name in enumerate(FEATURE_NAMES) if "_avg_" in name or "_risk_" in name]
SET_4 = list(range(18, len(FEATURE_NAMES)))
"""Feature set 4's columns: the customer's maximum amount, the terminal fraud ages."""


@pytest.fixture
def cluster_store(redis_cluster: LocalCluster) -> Iterator[RedisStore]:  # noqa: F811
    store = RedisStore.from_url(redis_cluster.url, prefix=f"t{uuid.uuid4().hex[:12]}")
    yield store
    store.drop()
    store.close()


def _batch(df: pd.DataFrame) -> TransactionBatch:
    return TransactionBatch.from_columns(
        df["transaction_id"].tolist(),
        df["customer_id"].tolist(),
        df["terminal_id"].tolist(),
        df["event_time_ms"].to_numpy(),
        df["amount"].to_numpy(),
    )


def test_cluster_store_equals_offline_on_every_feature(cluster_store: RedisStore) -> None:
    df = simulate(SimulatorConfig(n_customers=300, n_terminals=600, n_days=40, seed=3))
    offline = compute_features(df)
    assert len(df) > 15_000
    assert int(df["is_fraud"].sum()) > 100
    online = replay(cluster_store, df, batch_size=512)
    assert cluster_store._cluster is not None  # it did run as a cluster
    assert np.array_equal(online[:, COUNTS], offline[:, COUNTS])
    assert np.array_equal(online[:, :3], offline[:, :3])
    np.testing.assert_allclose(online[:, RATIOS], offline[:, RATIOS], rtol=1e-9, atol=0)
    assert np.array_equal(online[:, SET_4], offline[:, SET_4], equal_nan=True)
    assert (np.isfinite(online[:, SET_4]).sum(axis=0) > [12_000, 1_000, 1_000]).all()
    assert (online[:, FEATURE_NAMES.index("terminal_risk_30d")] > 0).sum() > 100


def test_keys_of_one_batch_land_on_several_nodes(
    cluster_store: RedisStore,
    redis_cluster: LocalCluster,  # noqa: F811
) -> None:
    df = simulate(SimulatorConfig(n_customers=50, n_terminals=100, n_days=5, seed=4)).head(512)
    cluster_store.apply(_batch(df))
    per_node, ids = [], 0
    for port in redis_cluster.ports:
        node = redis.Redis(host="127.0.0.1", port=port)
        keys = list(node.scan_iter(match=f"{cluster_store.prefix}:*", count=1000))
        per_node.append(sum(1 for k in keys if b":{c:" in k or b":{t:" in k))
        ids += sum(1 for k in keys if b":{x:" in k)
        node.close()
    assert sum(1 for n in per_node if n > 0) == 3
    customers, terminals = df["customer_id"].nunique(), df["terminal_id"].nunique()
    # per customer: history, and a rows hash per week of event time it has transactions
    # in (5 days: no spilled maxima); per terminal: history, and a tx id hash per week; per
    # transaction: its identity
    weeks = df["event_time_ms"] // 1000 // TTL_REFRESH_S
    rows_hashes = len(set(zip(df["customer_id"], weeks, strict=True)))
    id_hashes = len(set(zip(df["terminal_id"], weeks, strict=True)))
    assert customers < rows_hashes <= 2 * customers  # 5 days: at most two weeks each
    assert sum(per_node) == rows_hashes + customers + id_hashes + terminals
    assert ids == len(df) == df["transaction_id"].nunique()


def test_redelivery_and_a_crash_between_the_halves_count_once(cluster_store: RedisStore) -> None:
    df = simulate(SimulatorConfig(n_customers=40, n_terminals=20, n_days=60, seed=6))
    batches = [_batch(df.iloc[i : i + 300]) for i in range(0, 3000, 300)]
    memory = MemoryStore()
    cluster_store.applied_offsets()  # first use: asks the server, a cluster
    half = cluster_store._cluster
    assert half is not None
    for k, batch in enumerate(batches):
        want = memory.apply(batch)
        if k % 3 == 1:  # the ids and the terminal half applied, then the process died
            head = cluster_store._head.argv(0, {}, 0)[1:]
            numbers = numbers_of(batch, np.full(len(batch), np.nan))
            statuses = half.claim(batch, numbers, fingerprints(batch), head, None)
            assert statuses == bytes(len(batch)), (len(statuses), statuses[:20])
            half.apply_terminals(batch, numbers, head, statuses, 3, None)
        got = cluster_store.apply(batch)
        assert np.array_equal(got, want, equal_nan=True)
        # a lost reply: the same batch again gets the same vectors
        assert np.array_equal(cluster_store.apply(batch), got, equal_nan=True)


def test_labels_and_offsets_on_the_cluster(cluster_store: RedisStore) -> None:
    d = 7 * DAY_S * 1000
    first = TransactionBatch.from_columns(
        ["f1", "f2"], ["c1", "c2"], ["T", "T"], [T0, T0 + 1000], [1.0, 1.0]
    )
    cluster_store.apply(first, offsets={0: 10, 1: 5})
    fraud = Label("f1", "c1", "T", T0, T0 + d, True)
    legit = Label("f2", "c2", "T", T0 + 1000, T0 + d, False)
    assert cluster_store.apply_labels([fraud, fraud, legit]) == 2
    assert cluster_store.apply_labels([fraud]) == 0
    later = TransactionBatch.from_columns(["q"], ["c3"], ["T"], [T0 + d + 5000], [1.0])
    out = cluster_store.apply(later, offsets={0: 7, 1: 9})
    assert out[0, FEATURE_NAMES.index("terminal_nb_tx_1d")] == 2
    assert out[0, FEATURE_NAMES.index("terminal_risk_1d")] == 0.5
    assert cluster_store.applied_offsets() == {0: 10, 1: 9}
    cluster_store.apply(later.take([]), offsets={3: 4}, topic="other")
    assert cluster_store.applied_offsets("other") == {3: 4}


def test_one_key_scripts_run_on_the_node_that_holds_the_key(cluster_store: RedisStore) -> None:
    """``eval_on_key`` (serve's group order publishes its marks with it) on a cluster: the
    key's slot decides the node, whichever node the URL named."""
    from fraudstream.stream.group_order import BACKLOG, GroupOrder, key_of

    key = key_of(cluster_store.prefix, "g", "tx")
    order = GroupOrder(cluster_store.eval_on_key, key, slack_ms=1000)
    order.report({0: (T0, BACKLOG), 1: (T0 + 5, BACKLOG)})
    order.sync()
    assert order.errors == 0
    assert order.bound[:2] == (T0, frozenset({0}))
