"""The ``fraudstream`` command: a thin dispatcher to the commands each package registers."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from fraudstream.features.exceptions import FraudstreamError
from fraudstream.stream import logs

# Each module exposes ``register(subparsers)``; each command sets ``func(args) -> int``.
COMMAND_MODULES = (
    "fraudstream.stream.commands",
    "fraudstream.stream.history.cli",
    "fraudstream.features.cli",
    "fraudstream.models.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fraudstream",
        description="Real-time fraud scoring: Kafka in, Redis features, XGBoost, decisions out.",
    )
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    parser.add_argument("--plain-logs", action="store_true", help="human-readable logs, not JSON")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # XGBoost's OpenMP threads spin after each parallel region by default; on a small box
    # shared with librdkafka and Redis that spinning steals the CPU the I/O needs. Must be
    # set before xgboost loads (build_parser imports it).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    parser = build_parser()
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
