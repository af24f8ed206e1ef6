"""What fraudstream makes of a deployment: the settings a container's process builds from its
arguments and environment, through the real CLI parser and settings loaders; and which
settings are credentials (typed ``SecretStr``)."""

from __future__ import annotations

import os
from typing import Any, get_args

import pytest
from pydantic import SecretStr

from fraudstream.stream.cli import build_parser
from tests.unit.deploy.contract import split_command

SECRET_VALUE = "pl4ceholder-s3cret"
"""What the tests put where a Secret's value would be."""


def secret_fields() -> set[str]:
    """The settings of serve and the label pipeline that are credentials (``SecretStr``)."""
    from fraudstream.features.labels.settings import LabelSettings
    from fraudstream.stream.settings import ServeSettings

    found: set[str] = set()
    for model in (ServeSettings, LabelSettings):
        for name, field in model.model_fields.items():
            if field.annotation is SecretStr or SecretStr in get_args(field.annotation):
                found.add(name)
    return found


def secret_env_names() -> set[str]:
    return {f"FRAUDSTREAM_{name.upper()}" for name in secret_fields()}


def secret_flags() -> set[str]:
    return {"--" + name.replace("_", "-") for name in secret_fields()}


def placeholder(env_name: str) -> str:
    """A value for a credential the Secret would hold (a URL where the setting is one)."""
    if env_name.endswith("_URL"):
        return f"redis://fraudstream:{SECRET_VALUE}@redis.test:6379/0"
    return SECRET_VALUE


def settings_of(
    args: list[str], env: dict[str, str | None], monkeypatch: pytest.MonkeyPatch
) -> Any:
    """The settings ``fraudstream <args>`` builds with exactly this FRAUDSTREAM_ environment
    (None: a value from a Secret, replaced by a placeholder)."""
    from fraudstream.features.config import load_settings
    from fraudstream.features.labels.commands import settings_from_args
    from fraudstream.stream.commands import flags_of
    from fraudstream.stream.settings import ServeSettings

    for name in list(os.environ):
        if name.startswith("FRAUDSTREAM_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, placeholder(name) if value is None else value)
    parsed = build_parser().parse_args(args)
    path = split_command(build_parser(), args).path
    if path == ("serve",):
        return load_settings(ServeSettings, flags_of(parsed), None)
    assert path == ("features", "run"), path
    return settings_from_args(parsed)
