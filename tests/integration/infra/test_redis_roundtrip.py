"""The real Redis server answers reads, writes, scripts and expiry."""

from __future__ import annotations

import pytest
import redis

pytestmark = pytest.mark.integration


def test_redis_round_trip(redis_url: str, redis_prefix: str) -> None:
    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    key = f"{redis_prefix}:k"
    assert client.set(key, b"value", ex=60)
    assert client.get(key) == b"value"
    assert client.incrby(f"{redis_prefix}:n", 5) == 5
    assert (
        client.eval("return redis.call('INCRBY', KEYS[1], ARGV[1])", 1, f"{redis_prefix}:n", 3) == 8
    )
    assert 0 < client.ttl(key) <= 60
    assert client.delete(key, f"{redis_prefix}:n") == 2
    assert client.get(key) is None
