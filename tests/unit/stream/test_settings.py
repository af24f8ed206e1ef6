"""serve's settings: flags over environment over TOML; clear errors; secrets hidden."""

from __future__ import annotations

from pathlib import Path

import pytest

from fraudstream.features.config import load_settings, redact_url
from fraudstream.features.exceptions import ConfigError
from fraudstream.features.kafka import KafkaConnection
from fraudstream.stream.cli import build_parser
from fraudstream.stream.commands import flags_of
from fraudstream.stream.kafka.clients import consumer_config
from fraudstream.stream.settings import ServeSettings


def _flags(*argv: str) -> dict[str, object]:
    return flags_of(build_parser().parse_args(["serve", *argv]))


def test_flags_win_over_environment_which_wins_over_toml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    toml = tmp_path / "serve.toml"
    toml.write_text(
        'bootstrap_servers = "file:1"\nredis_url = "redis://file"\n'
        'registry = "/file"\nbudget_ms = 10\nmax_batch = 10\ngroup_id = "file"\n'
    )
    monkeypatch.setenv("FRAUDSTREAM_BUDGET_MS", "20")
    monkeypatch.setenv("FRAUDSTREAM_MAX_BATCH", "20")
    settings = load_settings(ServeSettings, _flags("--max-batch", "30"), toml)
    assert settings.max_batch == 30
    assert settings.budget_ms == 20
    assert settings.group_id == "file"
    assert settings.bootstrap_servers == "file:1"


def test_invalid_values_name_the_flag_and_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRAUDSTREAM_REDIS_URL", "redis://x")
    with pytest.raises(ConfigError) as err:
        load_settings(
            ServeSettings,
            _flags("--bootstrap-servers", "b:1", "--registry", "/r", "--budget-ms", "-5"),
            None,
        )
    assert "budget_ms (--budget-ms / FRAUDSTREAM_BUDGET_MS)" in str(err.value)


def test_unknown_toml_key_is_refused(tmp_path: Path) -> None:
    toml = tmp_path / "serve.toml"
    toml.write_text(
        'bootstrap_servers = "b:1"\nredis_url = "redis://x"\nregistry = "/r"\nbudjet_ms = 5\n'
    )
    with pytest.raises(ConfigError, match="budjet_ms"):
        load_settings(ServeSettings, {}, toml)


def test_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(ServeSettings, {}, tmp_path / "nope.toml")


def test_secrets_never_show(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secret_file = tmp_path / "pw"
    secret_file.write_text("hunter2\n")
    monkeypatch.setenv("FRAUDSTREAM_REDIS_URL", "redis://app:redispw@localhost:6379/0")
    settings = load_settings(
        ServeSettings,
        _flags(
            "--bootstrap-servers",
            "b:1",
            "--registry",
            "/r",
            "--security-protocol",
            "SASL_PLAINTEXT",
            "--sasl-mechanism",
            "SCRAM-SHA-256",
            "--sasl-username",
            "u",
            "--sasl-password-file",
            str(secret_file),
        ),
        None,
    )
    conn = settings.kafka()
    assert conn.to_librdkafka()["sasl.password"] == "hunter2"
    assert "hunter2" not in repr(settings) and "hunter2" not in str(conn.redacted())
    assert "redispw" not in repr(settings)
    assert redact_url(settings.redis_url.get_secret_value()) == "redis://app:***@localhost:6379/0"


def test_sasl_without_mechanism_is_refused() -> None:
    with pytest.raises(ConfigError, match="sasl_mechanism"):
        load_settings(
            ServeSettings,
            {
                "bootstrap_servers": "b:1",
                "redis_url": "redis://x",
                "registry": "/r",
                "security_protocol": "SASL_SSL",
            },
            None,
        )


@pytest.mark.parametrize(
    ("budget", "given", "expected"),
    [(50, None, 5), (120, None, 10), (20, None, 2), (2, None, 1), (50, 0, 0)],
)
def test_the_fetch_wait_follows_the_budget_unless_given(
    budget: float, given: int | None, expected: int
) -> None:
    flags = ["--bootstrap-servers", "b:1", "--registry", "/r", "--budget-ms", str(budget)]
    if given is not None:
        flags += ["--fetch-wait-ms", str(given)]
    settings = load_settings(ServeSettings, {**_flags(*flags), "redis_url": "redis://x"}, None)
    assert settings.effective_fetch_wait_ms() == expected


def test_the_consumer_gathers_fetches_as_configured() -> None:
    conf = consumer_config(
        KafkaConnection(bootstrap_servers="b:1"), "g", fetch_wait_ms=7, fetch_min_bytes=4096
    )
    assert (conf["fetch.wait.max.ms"], conf["fetch.min.bytes"]) == (7, 4096)
    assert conf["isolation.level"] == "read_committed"


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:1"])
def test_every_device_form_is_accepted(device: str) -> None:
    flags = _flags("--bootstrap-servers", "b:1", "--registry", "/r", "--device", device)
    settings = load_settings(ServeSettings, {**flags, "redis_url": "redis://x"}, None)
    assert settings.device == device


def test_an_unknown_device_names_the_flag() -> None:
    flags = _flags("--bootstrap-servers", "b:1", "--registry", "/r", "--device", "gpu")
    with pytest.raises(ConfigError, match=r"device \(--device / FRAUDSTREAM_DEVICE\)"):
        load_settings(ServeSettings, {**flags, "redis_url": "redis://x"}, None)


def test_scoring_threads_default_to_one_and_refuse_zero() -> None:
    base = _flags("--bootstrap-servers", "b:1", "--registry", "/r")
    settings = load_settings(ServeSettings, {**base, "redis_url": "redis://x"}, None)
    assert settings.scoring_threads == 1
    flags = _flags("--bootstrap-servers", "b:1", "--registry", "/r", "--scoring-threads", "4")
    assert (
        load_settings(ServeSettings, {**flags, "redis_url": "redis://x"}, None).scoring_threads == 4
    )
    flags = _flags("--bootstrap-servers", "b:1", "--registry", "/r", "--scoring-threads", "0")
    with pytest.raises(ConfigError, match=r"scoring_threads \(--scoring-threads"):
        load_settings(ServeSettings, {**flags, "redis_url": "redis://x"}, None)
