"""The label worker's settings and command: flags over environment over TOML; secrets from
the environment or a file, never shown; security settings become faust credentials."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest

from fraudstream.features.config import load_settings
from fraudstream.features.exceptions import ConfigError
from fraudstream.features.labels.commands import add_commands, settings_from_args
from fraudstream.features.labels.credentials import broker_credentials, broker_urls
from fraudstream.features.labels.settings import LabelSettings

SECRET = "s3cr3t-pa55"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("FRAUDSTREAM_"):
            monkeypatch.delenv(name)


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="features_command", required=True)
    add_commands(sub)
    return parser.parse_args(["run", *argv])


def _settings(*argv: str) -> LabelSettings:
    return settings_from_args(_parse(*argv))


def test_defaults_from_the_issue() -> None:
    s = _settings("--bootstrap-servers", "k:9092", "--redis-url", "redis://r:6379/0")
    assert (s.group_id, s.labels_topic, s.labels_dlq_topic) == (
        "fraudstream-labels",
        "fraud.labels",
        "fraud.labels.dlq",
    )
    assert (s.decisions_topic, s.web_port, s.redis_prefix) == ("fraud.decisions", 6066, "fs")
    assert s.security_protocol == "PLAINTEXT"
    assert broker_credentials(s) is None
    assert broker_urls(s) == ["kafka://k:9092"]


@pytest.mark.parametrize(
    "layout",
    [
        '[common]\nbootstrap_servers = "file:1"\nredis_url = "redis://file"\n'
        '[features.run]\ngroup_id = "file-group"\nweb_port = 7001\n'
        'labels_topic = "file.labels"\nkpi_partitions = 3\n',
        # the layout before tables: still the label worker's own file
        'bootstrap_servers = "file:1"\nredis_url = "redis://file"\n'
        'group_id = "file-group"\nweb_port = 7001\nlabels_topic = "file.labels"\n'
        "kpi_partitions = 3\n",
    ],
    ids=["tables", "flat"],
)
def test_flags_win_over_environment_which_wins_over_toml(
    layout: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    toml = tmp_path / "labels.toml"
    toml.write_text(layout)
    monkeypatch.setenv("FRAUDSTREAM_WEB_PORT", "7002")
    monkeypatch.setenv("FRAUDSTREAM_GROUP_ID", "env-group")
    s = _settings("--config", str(toml), "--group-id", "flag-group")
    assert s.group_id == "flag-group"
    assert s.web_port == 7002
    assert s.labels_topic == "file.labels"
    assert s.kpi_partitions == 3
    assert s.bootstrap_servers == "file:1"


def test_config_file_from_environment_and_missing_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FRAUDSTREAM_CONFIG", str(tmp_path / "nope.toml"))
    with pytest.raises(ConfigError, match=r"nope\.toml does not exist"):
        load_settings(LabelSettings, {}, None)


def test_invalid_values_name_the_flag_and_the_variable() -> None:
    with pytest.raises(ConfigError) as err:
        _settings("--bootstrap-servers", "k:1", "--redis-url", "redis://r", "--web-port", "0")
    assert "web_port (--web-port / FRAUDSTREAM_WEB_PORT)" in str(err.value)
    with pytest.raises(ConfigError, match="redis_url"):
        _settings("--bootstrap-servers", "k:1")


def test_sasl_password_from_environment_is_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRAUDSTREAM_SASL_PASSWORD", SECRET)
    s = _settings(
        *("--bootstrap-servers", "k:1", "--redis-url", f"redis://u:{SECRET}@r:6379/0"),
        *("--security-protocol", "SASL_PLAINTEXT", "--sasl-mechanism", "SCRAM-SHA-512"),
        *("--sasl-username", "labels"),
    )
    assert s.sasl_password is not None and s.sasl_password.get_secret_value() == SECRET
    shown = repr(s) + str(s.redacted())
    assert SECRET not in shown
    assert s.redacted()["redis_url"] == "redis://u:***@r:6379/0"
    creds = broker_credentials(s)
    assert (creds.username, creds.password, creds.mechanism.value) == (
        "labels",
        SECRET,
        "SCRAM-SHA-512",
    )
    assert creds.protocol.value == "SASL_PLAINTEXT"
    assert SECRET not in repr(creds)


def test_sasl_password_file_and_sasl_ssl(tmp_path: Path) -> None:
    secret_file = tmp_path / "password"
    secret_file.write_text(SECRET + "\n")
    s = _settings(
        *("--bootstrap-servers", "a:1,b:2", "--redis-url", "redis://r"),
        *("--security-protocol", "SASL_SSL", "--sasl-mechanism", "SCRAM-SHA-256"),
        *("--sasl-username", "u", "--sasl-password-file", str(secret_file)),
    )
    creds = broker_credentials(s)
    assert creds.password == SECRET
    assert creds.protocol.value == "SASL_SSL"
    assert creds.ssl_context is not None
    assert broker_urls(s) == ["kafka://a:1", "kafka://b:2"]


def test_sasl_without_mechanism_or_password_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    base = ("--bootstrap-servers", "k:1", "--redis-url", "redis://r")
    with pytest.raises(ConfigError, match="needs sasl_mechanism"):
        _settings(*base, "--security-protocol", "SASL_SSL")
    with pytest.raises(ConfigError, match="FRAUDSTREAM_SASL_PASSWORD"):
        _settings(
            *base,
            *("--security-protocol", "SASL_SSL", "--sasl-mechanism", "PLAIN"),
            *("--sasl-username", "u"),
        )
    with pytest.raises(ConfigError, match="sasl_password_file"):
        _settings(
            *base,
            *("--security-protocol", "SASL_SSL", "--sasl-mechanism", "PLAIN"),
            *("--sasl-username", "u", "--sasl-password-file", "/nonexistent/pw"),
        )


def test_ssl_files_that_do_not_load_are_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate")
    s = _settings(
        *("--bootstrap-servers", "k:1", "--redis-url", "redis://r"),
        *("--security-protocol", "SSL", "--ssl-ca-location", str(bad)),
    )
    with pytest.raises(ConfigError, match="ssl_ca_location"):
        broker_credentials(s)
    with pytest.raises(ConfigError, match="go together"):
        _settings(
            *("--bootstrap-servers", "k:1", "--redis-url", "redis://r"),
            *("--ssl-certificate-location", str(bad)),
        )


def test_the_command_runs_the_worker_with_its_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[LabelSettings] = []

    def fake_run(settings: LabelSettings) -> int:
        seen.append(settings)
        return 0

    monkeypatch.setattr("fraudstream.features.labels.worker.run", fake_run)
    args = _parse("--bootstrap-servers", "k:1", "--redis-url", "redis://r", "--web-port", "7")
    assert args.func(args) == 0
    assert seen[0].web_port == 7


def test_the_memory_store_gets_a_data_dir_removed_at_exit(tmp_path: Path) -> None:
    """faust creates its data directory even for the memory store: the worker gives it a
    temporary one rather than leaving ``<group-id>-data/`` in the working directory."""
    from fraudstream.features.labels.worker import _scratch_data_dir

    base = ("--bootstrap-servers", "k:9092", "--redis-url", "redis://r:6379/0")
    scratch = _scratch_data_dir(_settings(*base, "--group-id", "g7"))
    assert scratch is not None
    made = Path(scratch.name)
    assert made.is_dir() and made.name.startswith("fraudstream-g7-")
    scratch.cleanup()
    assert not made.exists()
    given = _settings(*base, "--data-dir", str(tmp_path / "faust"))
    assert given.data_dir == tmp_path / "faust"
    assert _scratch_data_dir(given) is None
    durable = LabelSettings(
        bootstrap_servers="k:9092",
        redis_url="redis://r:6379/0",  # type: ignore[arg-type]
        table_store="rocksdb://",
    )
    assert _scratch_data_dir(durable) is None
