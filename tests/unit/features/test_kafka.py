"""The Kafka connection is one model: every command that talks to Kafka takes the same flags
and applies the same rules to them, and the values become the same librdkafka and aiokafka
settings whichever command built them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fraudstream.features.cli import RebuildSettings
from fraudstream.features.config import (
    COMMON_KEYS,
    TABLES,
    KafkaSettings,
    given_flags,
    load_settings,
)
from fraudstream.features.exceptions import ConfigError
from fraudstream.features.kafka import KafkaConnection
from fraudstream.features.labels.credentials import broker_credentials, broker_urls
from fraudstream.features.labels.settings import LabelSettings
from fraudstream.stream.cli import build_parser
from fraudstream.stream.history.cli import BacktestSettings, ReplaySettings
from fraudstream.stream.settings import CheckSettings, ServeSettings

SECRET = "k4fka-s3cret"
COMMANDS: dict[str, tuple[type[KafkaSettings], list[str]]] = {
    "serve": (ServeSettings, ["--redis-url", "redis://r", "--registry", "/r"]),
    "check": (CheckSettings, []),
    "replay": (ReplaySettings, ["--data", "/d"]),
    "backtest": (
        BacktestSettings,
        ["--data", "/d", "--registry", "/r", "--test-start", "2018-05-01", "--report", "/o"],
    ),
    "features run": (LabelSettings, ["--redis-url", "redis://r"]),
    "features rebuild": (RebuildSettings, ["--redis-url", "redis://r"]),
}
"""Each Kafka command's settings and the flags it requires besides the connection."""


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("FRAUDSTREAM_"):
            monkeypatch.delenv(name)


def _settings(command: str, *argv: str) -> KafkaSettings:
    cls, required = COMMANDS[command]
    args = build_parser().parse_args([*command.split(), *required, *argv])
    return load_settings(cls, given_flags(cls, args), args.config)


def _error(command: str, *argv: str) -> str:
    with pytest.raises(ConfigError) as err:
        _settings(command, *argv)
    return str(err.value)


SASL = ("--security-protocol", "SASL_SSL", "--sasl-mechanism", "SCRAM-SHA-512")
BROKER = ("--bootstrap-servers", "k1:9092, k2:9093")


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (
            ("--security-protocol", "SASL_SSL"),
            "SASL_SSL needs sasl_mechanism (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)",
        ),
        (SASL, "needs sasl_username and a password (FRAUDSTREAM_SASL_PASSWORD or"),
        ((*SASL, "--sasl-username", "u"), "needs sasl_username and a password"),
        (
            (*SASL, "--sasl-username", "u", "--sasl-password-file", "/nonexistent/pw"),
            "sasl_password_file /nonexistent/pw: No such file or directory",
        ),
        (("--ssl-certificate-location", "/c.pem"), "go together (mutual TLS)"),
        (("--ssl-key-location", "/k.pem"), "go together (mutual TLS)"),
        (("--bootstrap-servers", " , "), "give host:port[,host:port...]"),
    ],
)
def test_every_kafka_command_refuses_the_same_connection_with_the_same_words(
    argv: tuple[str, ...], needle: str
) -> None:
    given = argv if "--bootstrap-servers" in argv else (*BROKER, *argv)
    messages = {command: _error(command, *given) for command in COMMANDS}
    assert all(needle in m for m in messages.values()), messages
    assert len(set(messages.values())) == 1, messages


@pytest.mark.parametrize("mechanism", ["GSSAPI", "OAUTHBEARER", "scram-sha-256"])
def test_a_mechanism_outside_the_shared_list_is_refused_everywhere(
    mechanism: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for command in COMMANDS:
        with pytest.raises(SystemExit):
            _settings(command, *BROKER, "--sasl-mechanism", mechanism)
        assert "invalid choice" in capsys.readouterr().err
    monkeypatch.setenv("FRAUDSTREAM_SASL_MECHANISM", mechanism)
    for command in COMMANDS:
        assert "sasl_mechanism (--sasl-mechanism / FRAUDSTREAM_SASL_MECHANISM)" in _error(
            command, *BROKER
        )


def test_every_command_turns_the_same_flags_into_the_same_client_settings(
    tmp_path: Path,
) -> None:
    password = tmp_path / "pw"
    password.write_text(SECRET + "\n")
    argv = (*BROKER, *SASL, "--sasl-username", "app", "--sasl-password-file", str(password))
    argv += ("--ssl-ca-location", str(tmp_path / "ca.pem"))
    confs = {command: _settings(command, *argv).kafka().to_librdkafka() for command in COMMANDS}
    expected = {
        "bootstrap.servers": "k1:9092, k2:9093",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "app",
        "sasl.password": SECRET,
        "ssl.ca.location": str(tmp_path / "ca.pem"),
    }
    assert confs == {command: expected for command in COMMANDS}


def test_the_label_worker_gets_the_same_values_as_aiokafka_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FRAUDSTREAM_SASL_PASSWORD", SECRET)
    argv = (*BROKER, "--security-protocol", "SASL_PLAINTEXT", "--sasl-mechanism", "PLAIN")
    settings = _settings("features run", *argv, "--sasl-username", "app")
    conn = _settings("serve", *argv, "--sasl-username", "app").kafka()
    assert settings.kafka() == conn
    creds = broker_credentials(conn)
    assert (creds.username, creds.password, creds.mechanism.value) == ("app", SECRET, "PLAIN")
    assert creds.protocol.value == "SASL_PLAINTEXT"
    assert broker_urls(conn) == ["kafka://k1:9092", "kafka://k2:9093"]


def test_secrets_are_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRAUDSTREAM_SASL_PASSWORD", SECRET)
    monkeypatch.setenv("FRAUDSTREAM_SSL_KEY_PASSWORD", SECRET + "-key")
    for command in COMMANDS:
        settings = _settings(command, *BROKER, *SASL, "--sasl-username", "app")
        conn = settings.kafka()
        assert conn.to_librdkafka()["ssl.key.password"] == SECRET + "-key"
        shown = repr(settings) + str(settings) + repr(conn) + str(conn.redacted())
        assert SECRET not in shown, command


def test_every_kafka_command_has_its_own_config_table() -> None:
    tables = [cls.config_table for cls, _ in COMMANDS.values()]
    assert sorted(tables) == sorted(set(TABLES) - {"common"})
    assert COMMON_KEYS == set(KafkaConnection.model_fields) | {"redis_url", "redis_prefix"}
