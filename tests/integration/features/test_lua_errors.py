"""An error in a script Redis runs names the ``features/lua`` file and line it comes from,
not the line of the assembled script (``user_script:N``), on one server and on a cluster
(whose scripts start with a ``#!lua`` line)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis
from redis.exceptions import ResponseError

from fraudstream.features.batch import TransactionBatch
from fraudstream.features.exceptions import FeatureStoreUnavailable
from fraudstream.features.redis_batches import numbers_of, single_calls
from fraudstream.features.redis_scripts import TTL_REFRESH_S
from fraudstream.features.redis_store import RedisStore
from fraudstream.features.store import fingerprints
from tests.cluster_infra import LocalCluster, redis_cluster  # noqa: F401 (fixture)

pytestmark = pytest.mark.integration

LUA = Path(__file__).resolve().parents[3] / "features" / "lua"
T0 = 1_522_540_800_000


def _at(name: str, code: str) -> str:
    """``features/lua/<name>:<line>`` of the one line of that file holding ``code``."""
    lines = [i for i, text in enumerate((LUA / name).read_text().splitlines(), 1) if code in text]
    assert len(lines) == 1, (name, code, lines)
    return f"features/lua/{name}:{lines[0]}"


def _one(tx_id: str = "a") -> TransactionBatch:
    return TransactionBatch.from_columns([tx_id], ["c"], ["t"], [T0], [1.0])


@pytest.fixture
def cluster_store(redis_cluster: LocalCluster) -> Iterator[RedisStore]:  # noqa: F811
    store = RedisStore.from_url(redis_cluster.url, prefix=f"t{uuid.uuid4().hex[:12]}")
    yield store
    store.drop()
    store.close()


def test_a_lua_runtime_error_names_its_file_and_line(redis_store: RedisStore) -> None:
    redis_store.apply(_one("warm-up"))  # the store knows it is a single server
    batch = _one()
    [(script, keys, args)] = single_calls(
        redis_store._tx_script,
        redis_store.prefix,
        redis_store._head,
        batch,
        numbers_of(batch, np.full(1, np.nan)),
        fingerprints(batch),
        {},
        "errors",
        8,
    )
    args[-3] = args[-3][:16]  # the numbers of one transaction, cut short
    with pytest.raises(ResponseError) as error:
        redis_store._run([(script, keys, args)], None)
    where = _at("entity_histories.lua", "local sec, x, ms, wm = unpack_('<dddd', numbers")
    assert str(error.value).startswith(
        f"{where}: bad argument #2 to 'unpack_' (data string too short)"
    ), error.value
    assert str(error.value).endswith(f", on {where}."), error.value
    assert "user_script" not in str(error.value)


def test_the_store_names_the_line_a_failed_redis_call_is_on(
    redis_store: RedisStore, raw_redis: redis.Redis
) -> None:
    raw_redis.hset(f"{redis_store.prefix}:{{c:c}}:h", "not", "a history")
    with pytest.raises(FeatureStoreUnavailable) as error:
        redis_store.apply(_one())
    where = _at("sorted_runs.lua", "local got = redis.call('GETRANGE', key, '0', ENDS[long])")
    assert "WRONGTYPE Operation against a key holding the wrong kind of value" in str(error.value)
    assert str(error.value).endswith(f", on {where}.)"), error.value


def test_a_cluster_script_error_names_its_file_and_line(
    cluster_store: RedisStore,
    redis_cluster: LocalCluster,  # noqa: F811
) -> None:
    cluster_store.apply(_one("warm-up"))
    assert cluster_store._cluster is not None  # it runs as a cluster
    client = redis.RedisCluster.from_url(redis_cluster.url)
    period = T0 // 1000 // TTL_REFRESH_S
    client.set(f"{cluster_store.prefix}:{{t:t}}:i{period}", "not a hash")
    client.close()
    with pytest.raises(FeatureStoreUnavailable) as error:
        cluster_store.apply(_one())
    where = _at("terminal_half.lua", "redis.call('HSETNX', ki .. period(sec), txid, '1')")
    assert "WRONGTYPE" in str(error.value)
    assert str(error.value).endswith(f", on {where}.)"), error.value
