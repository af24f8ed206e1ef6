"""The command checker used by the deployment tests catches what argparse would reject."""

from __future__ import annotations

import argparse

from tests.unit.deploy.contract import check_command, env_names, flag_value, split_command


def _cli() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="fraudstream")
    root.add_argument("--log-level")
    root.add_argument("--plain-logs", action="store_true")
    commands = root.add_subparsers(dest="command")
    serve = commands.add_parser("serve")
    serve.add_argument("--bootstrap-servers", required=True)
    serve.add_argument("--metrics-port", type=int)
    serve.add_argument("--device", choices=["auto", "cpu", "cuda"])
    serve.add_argument("--shadow", action="store_true")
    features = commands.add_parser("features").add_subparsers(dest="sub")
    run = features.add_parser("run")
    run.add_argument("--web-port", type=int)
    return root


def test_an_accepted_command_has_no_problems() -> None:
    tokens = ["serve", "--bootstrap-servers", "k:1", "--metrics-port=9108", "--device", "cuda"]
    assert check_command(_cli(), tokens) == []
    assert check_command(_cli(), ["fraudstream", "features", "run", "--web-port", "6066"]) == []


def test_global_options_before_the_subcommand_are_skipped() -> None:
    tokens = ["--log-level", "DEBUG", "--plain-logs", "serve", "--bootstrap-servers", "k:1"]
    assert split_command(_cli(), tokens).path == ("serve",)
    assert check_command(_cli(), tokens) == []


def test_unknown_subcommands_and_flags_are_reported() -> None:
    assert check_command(_cli(), ["features", "go"]) == [
        "after 'fraudstream features': 'go' is not one of run"
    ]
    problems = check_command(_cli(), ["serve", "--bootstrap-servers", "k:1", "--metrics"])
    assert problems == ["serve: unknown flag --metrics"]


def test_bad_values_and_missing_required_flags_are_reported() -> None:
    problems = check_command(_cli(), ["serve", "--device", "gpu", "--metrics-port", "x", "y"])
    assert problems == [
        "serve: --device 'gpu' is not one of ['auto', 'cpu', 'cuda']",
        "serve: --metrics-port 'x' is not a valid int",
        "serve: unexpected argument 'y'",
        "serve: required flag --bootstrap-servers is missing",
    ]


def test_flag_values_and_environment_names() -> None:
    assert flag_value(["serve", "--metrics-port", "9108"], "--metrics-port") == "9108"
    assert flag_value(["serve", "--metrics-port=9"], "--metrics-port") == "9"
    assert flag_value(["serve"], "--metrics-port") is None
    names = env_names(_cli(), ["serve"])
    assert {"FRAUDSTREAM_METRICS_PORT", "FRAUDSTREAM_SASL_PASSWORD"} <= names
    assert "FRAUDSTREAM_HELP" not in names
