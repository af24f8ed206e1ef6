"""The ``fraudstream`` command tree: every flag explains itself, and one thing has one flag on
every command (the Kafka connection, the column map, the Redis URL and prefix)."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Iterator

import pytest

from fraudstream.features.kafka import add_kafka_flags
from fraudstream.stream.cli import COMMAND_MODULES, build_parser, command_of

KAFKA_COMMANDS = {
    ("serve",),
    ("check",),
    ("replay",),
    ("backtest",),
    ("features", "run"),
    ("features", "rebuild"),
}
"""Every command that talks to Kafka."""


def _commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every parser of the tree with its subcommand path (the root's is empty)."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, (*path, name))


def _arguments(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [
        a
        for a in parser._actions
        if not isinstance(a, argparse._HelpAction | argparse._SubParsersAction)
    ]


def _kafka_group() -> list[argparse.Action]:
    parser = argparse.ArgumentParser()
    add_kafka_flags(parser)
    return _arguments(parser)


def _signature(action: argparse.Action) -> tuple[object, ...]:
    return (
        tuple(action.option_strings),
        action.dest,
        action.choices and tuple(action.choices),
        action.type,
        action.help,
        action.required,
    )


def test_the_tree_is_walked() -> None:
    paths = {path for path, _ in _commands(build_parser())}
    assert KAFKA_COMMANDS <= paths
    assert {("features", "compute"), ("train",), ("models", "tradeoff")} <= paths


def test_every_argument_and_subcommand_has_help_text() -> None:
    missing = []
    for path, parser in _commands(build_parser()):
        for action in _arguments(parser):
            if not (action.help or "").strip():
                name = "/".join(action.option_strings) or action.dest
                missing.append(f"fraudstream {' '.join(path)} {name}".replace("  ", " "))
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for choice in action._choices_actions:
                    if not (choice.help or "").strip():
                        missing.append(f"fraudstream {' '.join(path)} {choice.dest} (command)")
    assert missing == []


def test_the_check_finds_a_flag_without_help() -> None:
    parser = build_parser()
    parser.add_argument("--undocumented")
    assert any(not a.help for a in _arguments(parser))


@pytest.mark.parametrize("path", sorted(KAFKA_COMMANDS), ids=" ".join)
def test_every_kafka_command_has_the_one_connection_flag_group(path: tuple[str, ...]) -> None:
    parser = dict(_commands(build_parser()))[path]
    options = {opt: a for a in _arguments(parser) for opt in a.option_strings}
    for expected in _kafka_group():
        [flag] = expected.option_strings
        assert flag in options, f"fraudstream {' '.join(path)} lacks {flag}"
        assert _signature(options[flag]) == _signature(expected), flag
    assert "--config" in options


def test_no_other_command_takes_a_connection_flag() -> None:
    connection = {opt for a in _kafka_group() for opt in a.option_strings}
    for path, parser in _commands(build_parser()):
        if path not in KAFKA_COMMANDS:
            flags = {opt for a in _arguments(parser) for opt in a.option_strings}
            assert not flags & connection, path


def test_no_connection_secret_is_a_flag() -> None:
    for _, parser in _commands(build_parser()):
        flags = {opt for a in _arguments(parser) for opt in a.option_strings}
        assert not {"--sasl-password", "--ssl-key-password"} & flags


@pytest.mark.parametrize(
    ("dest", "flag"),
    [
        ("column_map", "--map"),
        ("map", "--map"),
        ("redis_url", "--redis-url"),
        ("redis_prefix", "--redis-prefix"),
        ("bootstrap_servers", "--bootstrap-servers"),
    ],
)
def test_one_thing_has_one_flag_on_every_command(dest: str, flag: str) -> None:
    seen = []
    for path, parser in _commands(build_parser()):
        for action in _arguments(parser):
            if action.dest == dest:
                seen.append(path)
                # older spellings may follow as aliases; help and usage show this one first
                assert action.option_strings[0] == flag, (path, action.option_strings)
    assert seen, f"no command has {flag}"


def test_features_compute_keeps_its_older_flag_names_as_aliases() -> None:
    argv = ["features", "compute", "--data", "d", "--out", "o", "--store", "redis"]
    old = build_parser().parse_args([*argv, "--column-map", "a=b", "--redis", "redis://x"])
    new = build_parser().parse_args([*argv, "--map", "a=b", "--redis-url", "redis://x"])
    assert (
        (old.column_map, old.redis_url)
        == (new.column_map, new.redis_url)
        == (
            "a=b",
            "redis://x",
        )
    )
    prefixed = build_parser().parse_args([*argv, "--prefix", "p1"])
    assert prefixed.redis_prefix == "p1"


@pytest.mark.parametrize("module", sorted(COMMAND_MODULES))
def test_each_module_registers_the_commands_the_dispatcher_expects_of_it(module: str) -> None:
    """``fraudstream serve`` builds only serve's module's parsers: the map from command to
    module must say what each module really registers."""
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    importlib.import_module(module).register(sub)
    assert set(sub.choices) == set(COMMAND_MODULES[module])


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["serve", "--registry", "r"], "serve"),
        (["--log-level", "DEBUG", "--plain-logs", "features", "run"], "features"),
        (["--help"], None),
        ([], None),
        (["--log-level"], None),
        (["nosuch"], "nosuch"),
    ],
)
def test_the_command_is_found_after_the_global_flags(argv: list[str], command: str) -> None:
    assert command_of(argv) == command


def test_one_command_s_parser_parses_as_the_whole_tree_does() -> None:
    argv = ["--log-level", "WARNING", "serve", "--registry", "r", "--budget-ms", "40"]
    whole = vars(build_parser().parse_args(argv))
    alone = vars(build_parser(command_of(argv)).parse_args(argv))
    assert alone == whole
    assert alone["budget_ms"] == 40


def test_an_unknown_command_gets_the_whole_list(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser(command_of(["nosuch"])).parse_args(["nosuch"])
    err = capsys.readouterr().err
    assert all(name in err for names in COMMAND_MODULES.values() for name in names)
