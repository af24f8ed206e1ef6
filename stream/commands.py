"""Registers ``check`` and ``serve``; ``flags_of`` turns parsed flags into settings input."""

from __future__ import annotations

import argparse
from pathlib import Path

from fraudstream.features.config import add_config_flag, load_settings
from fraudstream.features.kafka import add_kafka_flags
from fraudstream.features.local_store import CUSTOMER_STATE_HELP
from fraudstream.stream.group_order import DEFAULT_SLACK_S

SETTINGS_SOURCES = (
    "Every flag also comes from FRAUDSTREAM_<FLAG> or a TOML file (--config or "
    "FRAUDSTREAM_CONFIG: its [common] table and the command's own); flags win over the "
    "environment, the environment over the file."
)
"""The sentence every command with settings puts in its --help."""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    check = subparsers.add_parser(
        "check",
        help="check that a Kafka broker answers, with the configured security",
        description=SETTINGS_SOURCES,
    )
    add_config_flag(check, "check")
    add_kafka_flags(check)
    check.add_argument(
        "--timeout-s", type=float, help="how long to wait for a broker to answer (default 10)"
    )
    check.set_defaults(func=_check)
    _add_serve(subparsers)


def _add_serve(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = subparsers.add_parser(
        "serve",
        help="score transactions from Kafka under a latency budget",
        description=SETTINGS_SOURCES,
    )
    add_config_flag(serve, "serve")
    add_kafka_flags(serve)
    s = serve.add_argument
    s("--redis-url", help="feature store, redis:// or rediss:// (env FRAUDSTREAM_REDIS_URL)")
    s("--redis-prefix", help="feature key prefix (default fs)")
    s("--customer-state", choices=["redis", "local"], help=CUSTOMER_STATE_HELP)
    s("--registry", type=Path, help="model registry folder")
    s("--group-id", help="consumer group (default fraudstream)")
    s("--input-topic", help="default transactions")
    s("--decisions-topic", help="default fraud.decisions")
    s("--alerts-topic", help="default fraud.alerts")
    s("--dlq-topic", help="default transactions.dlq")
    s("--labels-topic", help="fraud labels, read by a store rebuild (default fraud.labels)")
    s("--labels-group-id", help="label worker's group (default fraudstream-labels)")
    s(
        "--store-rebuild",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="rebuild the feature store from Kafka when it lost data (default on)",
    )
    s("--budget-ms", type=float, help="per-message latency budget (default 50)")
    s(
        "--degrade",
        choices=["never", "to-meet-deadlines"],
        help="to-meet-deadlines (default): a rung below the full path only where it makes a "
        "deadline the full path would miss and keeps >= half its average precision; never: "
        "always the full path (late rather than blind)",
    )
    s(
        "--store-timeout-ms",
        type=int,
        help="a store call unanswered this long is an outage (default 1000); a slower reply "
        "within it is waited for, not taken for one",
    )
    s(
        "--clock-skew-tolerance-ms",
        type=float,
        help="producer timestamps this far behind are taken as they are; beyond, corrected "
        "as clock skew (default 20)",
    )
    s("--max-batch", type=int, help="largest micro-batch (default 1024)")
    s(
        "--fetch-wait-ms",
        type=int,
        help="the broker gathers a fetch this long at most (default budget/10, 1 to 10)",
    )
    s("--fetch-min-bytes", type=int, help="bytes a fetch gathers (default 8192)")
    s(
        "--commit-interval-ms",
        type=int,
        help="at-least-once: least time between offset commits (default 100; 0: every batch)",
    )
    s(
        "--transaction-interval-ms",
        type=int,
        help="exactly-once: least time between two commits' starts (default 15; 0: the next "
        "as soon as the previous one is done)",
    )
    s(
        "--store-lookahead",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="with input waiting, the next batch's store call runs while the loop scores and "
        "emits the one before (default on)",
    )
    s(
        "--align-partitions",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="take partitions with a backlog in Kafka timestamp order, so that terminals "
        "see records in order (default on); caught-up partitions go as they come",
    )
    s(
        "--group-order",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="with --align-partitions, keep the group's processes within "
        "--group-order-slack-s of one another's event time, through marks in Redis "
        "(default on)",
    )
    s(
        "--group-order-slack-s",
        type=float,
        help="how far past the group's slowest partition a process may go, in seconds of "
        f"event time (default {DEFAULT_SLACK_S:,}: a day inside the 7-day label delay)",
    )
    s(
        "--guarantee",
        choices=["at-least-once", "exactly-once"],
        help="at-least-once (default): offsets committed once the decisions are acknowledged; "
        "exactly-once: Kafka transactions, readers use read_committed",
    )
    s("--device", help="scoring device: auto (default: a GPU when one works), cpu, cuda, cuda:N")
    s(
        "--scoring-threads",
        type=int,
        help="CPU threads one batch's scoring may use (default 1: the other cores go to the "
        "store call ahead, librdkafka and Redis; scale out with processes)",
    )
    s("--metrics-port", type=int, help="/metrics, /healthz, /readyz (default 9108; 0 = off)")
    s("--shadow", metavar="VERSION", help="challenger model scored beside the champion")
    s("--shadow-topic", help="default fraud.shadow")
    s(
        "--instance-id",
        help="this process's name in the group, kept across restarts (e.g. a StatefulSet "
        "ordinal); exactly-once ids derive from it (default: <host>-<lowest free slot>)",
    )
    s(
        "--transactional-id",
        help="exactly-once transactional id (default: <group>-<instance id>)",
    )
    s(
        "--liveness-timeout-s",
        type=float,
        help="/healthz answers 503 after this long without loop progress (default 60)",
    )
    s(
        "--transaction-timeout-ms",
        type=int,
        help="exactly-once: the broker aborts a transaction open longer (default 60000)",
    )
    s("--shutdown-timeout-s", type=float, help="bound on a graceful stop (default 30)")
    s("--model-poll-s", type=float, help="seconds between checks of CURRENT (default 2)")
    s("--rules-review-amount", type=float, help="rule fallback review amount (default 220)")
    s("--rules-decline-amount", type=float, help="rule fallback decline amount (default 5000)")
    s(
        "--max-pending",
        type=int,
        help="transactions kept for an unavailable store before consumption pauses "
        "(default 200000)",
    )
    serve.set_defaults(func=_serve)


def flags_of(args: argparse.Namespace, skip: tuple[str, ...] = ()) -> dict[str, object]:
    """The settings given as flags (argparse leaves the others None)."""
    skipped = {"func", "command", "log_level", "plain_logs", "config", *skip}
    return {k: v for k, v in vars(args).items() if k not in skipped}


def _check(args: argparse.Namespace) -> int:
    from fraudstream.stream.kafka.connection import ensure_reachable
    from fraudstream.stream.settings import CheckSettings

    settings = load_settings(CheckSettings, flags_of(args), args.config)
    brokers = ensure_reachable(settings.kafka(), settings.timeout_s)
    print(f"ok: {brokers} broker(s) answered at {settings.bootstrap_servers}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from fraudstream.models.device import resolve_device
    from fraudstream.stream.service import build
    from fraudstream.stream.settings import ServeSettings

    settings = load_settings(ServeSettings, flags_of(args), args.config)
    resolve_device(settings.device, need_cupy=True)  # a device that cannot work: exit 2 now
    return build(settings).run()
