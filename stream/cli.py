"""The ``fraudstream`` command: a thin dispatcher to the commands each package registers."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from fraudstream.features.exceptions import FraudstreamError
from fraudstream.stream import logs

# Each module exposes ``register(subparsers)`` adding these commands; each command sets
# ``func(args) -> int``.
COMMAND_MODULES = {
    "fraudstream.stream.commands": ("check", "serve"),
    "fraudstream.stream.history.cli": ("replay", "backtest"),
    "fraudstream.features.cli": ("features", "simulate"),
    "fraudstream.models.cli": ("models", "train", "evaluate"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or only of the module that registers ``command`` when
    it names one: ``serve`` (a restart, above all) then loads none of the training, replay
    and report code, nor pandas and pyarrow with it."""
    parser = argparse.ArgumentParser(
        prog="fraudstream",
        description="Real-time fraud scoring: Kafka in, Redis features, XGBoost, decisions out.",
    )
    _add_global_flags(parser)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    wanted = [m for m, names in COMMAND_MODULES.items() if command in names]
    for name in wanted or COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def _add_global_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    parser.add_argument("--plain-logs", action="store_true", help="human-readable logs, not JSON")


def command_of(argv: Sequence[str] | None) -> str | None:
    """The command ``argv`` names (after the global flags), or None (then the whole parser
    says what is wrong with ``argv``)."""
    pre = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    _add_global_flags(pre)
    pre.add_argument("command", nargs="?")
    try:
        known, _ = pre.parse_known_args(argv)
    except argparse.ArgumentError:
        return None
    return str(known.command) if known.command is not None else None


def main(argv: Sequence[str] | None = None) -> int:
    # XGBoost's OpenMP threads spin after each parallel region by default; on a small box
    # shared with librdkafka and Redis that spinning steals the CPU the I/O needs. Must be
    # set before xgboost loads (build_parser imports it).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    parser = build_parser(command_of(argv))
    args = parser.parse_args(argv)
    logs.configure(args.log_level, json_logs=not args.plain_logs)
    try:
        return int(args.func(args))
    except FraudstreamError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
