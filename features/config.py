"""How every command builds its settings: flags win over ``FRAUDSTREAM_*`` variables, which win
over the command's table of a TOML file (``--config`` or ``FRAUDSTREAM_CONFIG``), which wins
over the file's ``[common]`` table. Validated once at start; secrets are ``SecretStr``.

One file serves every command; keys are the settings' names (a flag without its dashes,
underscores for hyphens)::

    [common]            # shared: the Kafka connection, redis_url, redis_prefix
    bootstrap_servers = "kafka-1:9092,kafka-2:9092"
    security_protocol = "SASL_SSL"

    [serve]             # fraudstream serve
    registry = "/models"

    [features.run]      # fraudstream features run
    replication_factor = 3

A command reads ``[common]`` (the keys it has) and its own table. A key its table does not
know is refused, naming it; so is a ``[common]`` key that is not a shared setting and a table
that no command reads. A file without tables is the older one-command layout: ``serve`` and
``features run`` read it as their own table, other commands refuse it and name the fix.
"""

from __future__ import annotations

import argparse
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from pydantic import ValidationError
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from fraudstream.features.exceptions import ConfigError
from fraudstream.features.kafka import KafkaConnection

TABLES = ("common", "serve", "check", "replay", "backtest", "features.run", "features.rebuild")
"""The tables of a config file: ``common`` and one per command that has settings."""
COMMON_KEYS = frozenset(KafkaConnection.model_fields) | {"redis_url", "redis_prefix"}
"""What ``[common]`` may hold: the settings several commands share with one meaning."""
DOCS = "docs/OPERATIONS.md, Configuration"

S = TypeVar("S", bound="CommandSettings")


class CommandSettings(BaseSettings):
    """Base of every command's settings: one frozen object built at start."""

    model_config = SettingsConfigDict(env_prefix="FRAUDSTREAM_", extra="forbid", frozen=True)
    config_table: ClassVar[str] = ""
    """This command's table in the config file, e.g. ``serve`` or ``features.run``."""
    reads_flat_file: ClassVar[bool] = False
    """Whether a file without tables (the older one-command layout) is this command's own."""
    _file_values: ClassVar[Mapping[str, Any]] = {}

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        from_file = InitSettingsSource(settings_cls, init_kwargs=dict(cls._file_values))
        return (init_settings, env_settings, from_file)


class KafkaSettings(CommandSettings, KafkaConnection):
    """Settings of a command that talks to Kafka: the connection's fields and rules
    (``fraudstream.features.kafka.KafkaConnection``) and the command's own."""

    model_config = CommandSettings.model_config

    def kafka(self) -> KafkaConnection:
        """The connection values alone, for the Kafka adapters."""
        return KafkaConnection(**{n: getattr(self, n) for n in KafkaConnection.model_fields})


def add_config_flag(parser: argparse.ArgumentParser, table: str) -> None:
    """``--config``, the same on every command with settings."""
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help=f"TOML file; this command reads its [common] and [{table}] tables "
        "(default: $FRAUDSTREAM_CONFIG)",
    )


def given_flags(cls: type[CommandSettings], args: argparse.Namespace) -> dict[str, Any]:
    """The parsed flags that are settings of ``cls`` (argparse leaves those not given None)."""
    return {k: v for k, v in vars(args).items() if k in cls.model_fields}


def load_settings(cls: type[S], flags: Mapping[str, Any], config_file: Path | None) -> S:
    """Build ``cls`` from flags (None = not given), the environment and the config file."""
    path = config_file or _env_config()
    values = {} if path is None else file_values(cls, path)
    given = {k: v for k, v in flags.items() if v is not None}
    bound = type(cls.__name__, (cls,), {"_file_values": values})
    try:
        settings: S = bound(**given)
    except ValidationError as exc:
        raise ConfigError(describe(exc)) from None
    return settings


def file_values(cls: type[CommandSettings], path: Path) -> dict[str, Any]:
    """What the file at ``path`` sets for ``cls``: its ``[common]`` keys overlaid with its
    own table (or the whole file, in the older layout)."""
    doc = _read(path)
    plain = sorted(k for k, v in doc.items() if not isinstance(v, dict))
    if plain:
        return _flat_values(cls, path, doc, plain)
    tables = _tables(doc, path)
    common = tables.get("common", {})
    stray = sorted(set(common) - COMMON_KEYS)
    if stray:
        msg = (
            f"config file {path}: {', '.join(stray)} in [common] is not a shared setting "
            f"(those are {', '.join(sorted(COMMON_KEYS))}); put it in its command's table"
        )
        raise ConfigError(msg)
    own = tables.get(cls.config_table, {})
    _refuse_unknown(cls, path, own, f"[{cls.config_table}]")
    return {k: v for k, v in common.items() if k in cls.model_fields} | own


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        msg = f"config file {path} does not exist (given by --config or FRAUDSTREAM_CONFIG)"
        raise ConfigError(msg)
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        msg = f"config file {path} is not valid TOML: {exc}"
        raise ConfigError(msg) from None
    except OSError as exc:
        msg = f"cannot read config file {path}: {exc.strerror}"
        raise ConfigError(msg) from None


def _flat_values(
    cls: type[CommandSettings], path: Path, doc: dict[str, Any], plain: list[str]
) -> dict[str, Any]:
    if len(plain) < len(doc):
        msg = (
            f"config file {path} has keys outside any table ({', '.join(plain)}) beside "
            f"tables: put each in [common] or its command's table ({DOCS})"
        )
        raise ConfigError(msg)
    if not cls.reads_flat_file:
        msg = (
            f"config file {path} has no tables: it is the older one-command layout. "
            f"fraudstream {_command(cls)} reads the tables [common] and [{cls.config_table}]: "
            "move the connection and the Redis keys to [common] and the rest to the table of "
            f"the command the file was for, e.g. [serve] ({DOCS})"
        )
        raise ConfigError(msg)
    _refuse_unknown(cls, path, doc, "the file (no tables)")
    return doc


def _tables(node: Mapping[str, Any], path: Path, prefix: str = "") -> dict[str, dict[str, Any]]:
    """The known tables of the file by dotted name; an unknown one is refused."""
    found: dict[str, dict[str, Any]] = {}
    for key, value in node.items():
        name = prefix + key
        if name in TABLES and isinstance(value, dict):
            found[name] = value
        elif isinstance(value, dict) and any(t.startswith(name + ".") for t in TABLES):
            found |= _tables(value, path, name + ".")
        else:
            msg = (
                f"config file {path}: {name} is not a table fraudstream reads "
                f"(those are {', '.join(f'[{t}]' for t in TABLES)})"
            )
            raise ConfigError(msg)
    return found


def _refuse_unknown(
    cls: type[CommandSettings], path: Path, table: Mapping[str, Any], where: str
) -> None:
    unknown = sorted(set(table) - set(cls.model_fields))
    if unknown:
        msg = (
            f"config file {path}: unknown key {', '.join(unknown)} in {where}; "
            f"fraudstream {_command(cls)}'s keys are its settings' names (see --help, "
            "underscores for hyphens)"
        )
        raise ConfigError(msg)


def _command(cls: type[CommandSettings]) -> str:
    return cls.config_table.replace(".", " ")


def _env_config() -> Path | None:
    value = os.environ.get("FRAUDSTREAM_CONFIG")
    return Path(value) if value else None


def describe(exc: ValidationError) -> str:
    """One line naming each bad setting with its flag and its variable."""
    parts = []
    for err in exc.errors(include_input=False):
        if not err["loc"]:  # a rule across fields: its message names them
            parts.append(err["msg"].removeprefix("Value error, "))
            continue
        field = ".".join(str(p) for p in err["loc"])
        flag = "--" + field.replace("_", "-")
        parts.append(f"{field} ({flag} / FRAUDSTREAM_{field.upper()}): {err['msg']}")
    return "invalid settings: " + "; ".join(parts)


def redact_url(url: str) -> str:
    """``redis://user:secret@host`` → ``redis://user:***@host``."""
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)
