"""The start-up check: refused credentials fail at once and clearly, a silent broker after the
connect timeout; the password never appears in the message."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from pydantic import SecretStr

from fraudstream.features.labels import preflight
from fraudstream.features.labels.exceptions import KafkaAuthenticationFailed, KafkaUnreachable
from fraudstream.features.labels.settings import LabelSettings

SECRET = "pw-that-must-not-show"


def _settings(bootstrap: str, **extra: Any) -> LabelSettings:
    return LabelSettings(
        bootstrap_servers=bootstrap,
        redis_url=SecretStr("redis://r"),
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-256",
        sasl_username="u",
        sasl_password=SecretStr(SECRET),
        **extra,
    )


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_auth_arguments_are_faust_s() -> None:
    auth = preflight.aiokafka_auth(_settings("k:1"))
    assert auth["security_protocol"] == "SASL_PLAINTEXT"
    assert auth["sasl_mechanism"] == "SCRAM-SHA-256"
    assert (auth["sasl_plain_username"], auth["sasl_plain_password"]) == ("u", SECRET)


def test_refused_credentials_fail_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    async def refuse(*args: Any, **kwargs: Any) -> None:
        calls.append(args)
        raise preflight._errors.SaslAuthenticationFailed(f"invalid credentials {SECRET}")

    monkeypatch.setattr(preflight._conn, "create_conn", refuse)
    with pytest.raises(KafkaAuthenticationFailed) as err:
        preflight.check_kafka(_settings("a:1,b:2", connect_timeout_s=30))
    assert len(calls) == 1
    text = str(err.value)
    assert "Kafka authentication failed at a:1" in text and "user 'u' with SCRAM-SHA-256" in text
    assert SECRET not in text and "***" in text


def test_no_broker_is_unreachable_after_the_timeout() -> None:
    host = f"127.0.0.1:{_closed_port()}"
    with pytest.raises(KafkaUnreachable, match="no Kafka broker answered within 0.5 s") as err:
        preflight.check_kafka(_settings(f"{host},nohostport", connect_timeout_s=0.5))
    assert "is not host:port" in str(err.value) and host in str(err.value)


def test_a_broker_that_answers_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    class Conn:
        closed = False

        def close(self) -> None:
            Conn.closed = True

    async def accept(*args: Any, **kwargs: Any) -> Conn:
        return Conn()

    monkeypatch.setattr(preflight._conn, "create_conn", accept)
    preflight.check_kafka(_settings("k:1"))
    assert Conn.closed
