"""One config file for every command: ``[common]`` plus a table per command; what each
command takes from it, in which order, and the errors that name what is wrong."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fraudstream.features.cli import RebuildSettings
from fraudstream.features.config import load_settings
from fraudstream.features.exceptions import ConfigError
from fraudstream.features.labels.settings import LabelSettings
from fraudstream.stream.settings import CheckSettings, ServeSettings

FILE = """
[common]
bootstrap_servers = "common:9092"
security_protocol = "SSL"
redis_url = "redis://common/0"
redis_prefix = "shared"

[serve]
registry = "/models"
group_id = "scorers"
redis_prefix = "serve-own"

[check]
timeout_s = 3

[features.run]
group_id = "labellers"
web_port = 7001

[features.rebuild]
no_labels = true
"""


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("FRAUDSTREAM_"):
            monkeypatch.delenv(name)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "fraudstream.toml"
    path.write_text(FILE)
    return path


def test_each_command_reads_common_and_its_own_table(config: Path) -> None:
    serve = load_settings(ServeSettings, {}, config)
    labels = load_settings(LabelSettings, {}, config)
    check = load_settings(CheckSettings, {}, config)
    rebuild = load_settings(RebuildSettings, {}, config)
    assert {s.bootstrap_servers for s in (serve, labels, check, rebuild)} == {"common:9092"}
    assert {s.security_protocol for s in (serve, labels, check, rebuild)} == {"SSL"}
    assert (serve.group_id, labels.group_id, rebuild.group_id) == (
        "scorers",
        "labellers",
        "fraudstream",
    )
    assert (serve.redis_prefix, labels.redis_prefix, rebuild.redis_prefix) == (
        "serve-own",
        "shared",
        "shared",
    )
    assert (check.timeout_s, labels.web_port, rebuild.no_labels) == (3, 7001, True)
    assert serve.redis_url.get_secret_value() == "redis://common/0"


def test_flags_over_environment_over_own_table_over_common(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FRAUDSTREAM_CONFIG", str(config))
    monkeypatch.setenv("FRAUDSTREAM_GROUP_ID", "from-env")
    serve = load_settings(ServeSettings, {"bootstrap_servers": "flag:1"}, None)
    assert (serve.bootstrap_servers, serve.group_id) == ("flag:1", "from-env")
    assert serve.registry == Path("/models")


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('[serve]\nregistry = "/m"\nbudjet_ms = 5\n', "unknown key budjet_ms in [serve]"),
        ("[features.run]\nweb_prot = 1\n", "unknown key web_prot in [features.run]"),
        ("[common]\nbudget_ms = 5\n", "budget_ms in [common] is not a shared setting"),
        ("[sevre]\nbudget_ms = 5\n", "sevre is not a table fraudstream reads"),
        ("[features]\nweb_port = 5\n", "features.web_port is not a table fraudstream reads"),
        ('budget_ms = 5\n[serve]\nregistry = "/m"\n', "has keys outside any table (budget_ms)"),
        ("[serve\n", "is not valid TOML"),
    ],
)
def test_what_is_wrong_in_the_file_is_named(
    text: str, needle: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    monkeypatch.setenv("FRAUDSTREAM_REDIS_URL", "redis://r")
    with pytest.raises(ConfigError) as err:
        load_settings(ServeSettings, {"bootstrap_servers": "b:1", "registry": "/r"}, path)
        load_settings(LabelSettings, {"bootstrap_servers": "b:1"}, path)
    assert needle in str(err.value)
    assert str(path) in str(err.value)


def test_a_table_of_another_command_may_hold_what_this_one_does_not_know(
    config: Path,
) -> None:
    # [check] holds timeout_s, [features.run] web_port: serve knows neither and minds neither
    assert load_settings(ServeSettings, {}, config).registry == Path("/models")


def test_a_file_without_tables_is_still_the_own_file_of_serve_and_of_the_label_worker(
    tmp_path: Path,
) -> None:
    flat = tmp_path / "serve.toml"
    flat.write_text('bootstrap_servers = "b:1"\nredis_url = "redis://x"\nregistry = "/r"\n')
    assert load_settings(ServeSettings, {}, flat).bootstrap_servers == "b:1"
    with pytest.raises(ConfigError, match=r"unknown key registry in the file \(no tables\)"):
        load_settings(LabelSettings, {}, flat)
    with pytest.raises(ConfigError) as err:
        load_settings(CheckSettings, {}, flat)
    assert "has no tables" in str(err.value)
    assert "move the connection and the Redis keys to [common]" in str(err.value)


def test_an_empty_file_sets_nothing(tmp_path: Path) -> None:
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    assert load_settings(CheckSettings, {"bootstrap_servers": "b:1"}, empty).timeout_s == 10


def test_a_bad_value_in_a_table_names_the_setting(tmp_path: Path) -> None:
    path = tmp_path / "f.toml"
    path.write_text('[common]\nbootstrap_servers = "b:1"\n[check]\ntimeout_s = -1\n')
    with pytest.raises(ConfigError, match=r"timeout_s \(--timeout-s / FRAUDSTREAM_TIMEOUT_S\)"):
        load_settings(CheckSettings, {}, path)
