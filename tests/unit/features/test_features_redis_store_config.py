"""Redis store construction and error wording, without a server."""

from __future__ import annotations

import pytest
from redis.connection import SSLConnection, UnixDomainSocketConnection

from fraudstream.features.batch import TransactionBatch
from fraudstream.features.exceptions import ConfigError
from fraudstream.features.redis_store import RedisStore


def test_rediss_url_uses_tls_and_credentials() -> None:
    store = RedisStore.from_url("rediss://scorer:pw@cache.example:6380/2", socket_timeout_s=0.7)
    pool = store._pool
    assert pool.connection_class is SSLConnection
    kwargs = pool.connection_kwargs
    assert (kwargs["username"], kwargs["password"], kwargs["db"]) == ("scorer", "pw", 2)
    assert kwargs["socket_timeout"] == 0.7
    assert store._display_url == "rediss://scorer:***@cache.example:6380/2"
    store.close()


def test_unix_socket_url() -> None:
    store = RedisStore.from_url("unix:///tmp/redis.sock?db=1")
    assert store._pool.connection_class is UnixDomainSocketConnection
    store.close()


@pytest.mark.parametrize("url", ["http://x:1", "localhost:6379", "kafka://x"])
def test_other_schemes_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError, match="redis://"):
        RedisStore.from_url(url)


@pytest.mark.parametrize("prefix", ["", "a{b", "x}", "p*", "a b"])
def test_bad_prefixes_are_config_errors(prefix: str) -> None:
    with pytest.raises(ConfigError, match="prefix"):
        RedisStore.from_url("redis://127.0.0.1:1/0", prefix=prefix)


def test_empty_transaction_id_is_refused_before_any_call() -> None:
    store = RedisStore.from_url("redis://127.0.0.1:1/0")
    batch = TransactionBatch.from_columns([""], ["c"], ["t"], [1_522_540_800_000], [1.0])
    with pytest.raises(ValueError, match="transaction_id"):
        store.apply(batch)
    store.close()
