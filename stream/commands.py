"""Registers the streaming commands: ``check``, ``serve``, ``replay``, ``backtest``."""

from __future__ import annotations

import argparse

from stream.kafka.connection import KafkaConnection, ensure_reachable

SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]


def register(subparsers: SubParsers) -> None:
    check = subparsers.add_parser("check", help="check that a Kafka broker answers")
    check.add_argument("--bootstrap-servers", required=True, metavar="HOST:PORT")
    check.add_argument("--timeout-s", type=float, default=10.0)
    check.set_defaults(func=_check)


def _check(args: argparse.Namespace) -> int:
    conn = KafkaConnection(bootstrap_servers=args.bootstrap_servers)
    brokers = ensure_reachable(conn, args.timeout_s)
    print(f"ok: {brokers} broker(s) answered at {args.bootstrap_servers}")
    return 0
