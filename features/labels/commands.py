"""``fraudstream features run``: the command that starts the label worker."""

from __future__ import annotations

import argparse

from fraudstream.features.config import add_config_flag, given_flags, load_settings
from fraudstream.features.kafka import add_kafka_flags
from fraudstream.features.labels.settings import LabelSettings

SETTINGS_SOURCES = (
    "Every flag also comes from FRAUDSTREAM_<FLAG> or a TOML file (--config or "
    "FRAUDSTREAM_CONFIG: its [common] and [features.run] tables); flags win over the "
    "environment, the environment over the file."
)


def add_commands(
    features_subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    """Add ``run`` under the ``features`` command."""
    run = features_subparsers.add_parser(
        "run",
        help="apply fraud labels to the feature store and serve live KPIs",
        description=SETTINGS_SOURCES,
    )
    add_run_flags(run)
    run.set_defaults(func=run_command)


def add_run_flags(parser: argparse.ArgumentParser) -> None:
    add_config_flag(parser, "features.run")
    add_kafka_flags(parser)
    a = parser.add_argument
    a(
        "--redis-url",
        help="feature store, redis://, rediss:// or unix:// (or FRAUDSTREAM_REDIS_URL)",
    )
    a("--redis-prefix", help="feature key prefix, serve's (default fs)")
    a("--group-id", help="consumer group and app id (default fraudstream-labels)")
    a("--labels-topic", help="topic of fraud labels (default fraud.labels)")
    a("--labels-dlq-topic", help="dead-letter topic of bad labels (default fraud.labels.dlq)")
    a("--decisions-topic", help="serve's decisions, read for the KPIs (default fraud.decisions)")
    a("--web-port", type=int, help="/kpis, /healthz and /metrics (default 6066)")
    a(
        "--replication-factor",
        type=int,
        metavar="N",
        help="replicas of the internal topics the worker creates (its join topic and the KPI "
        "table's changelog); at most the number of brokers: 3 on a production cluster "
        "(default 1, for a single broker)",
    )
    a(
        "--data-dir",
        metavar="DIR",
        help="faust's data directory, where a rocksdb:// table store keeps its tables "
        "(default <group-id>-data; with the default memory store, a temporary directory "
        "removed at exit)",
    )
    a(
        "--labels-stale-after-s",
        type=float,
        help="warn (and set fraudstream_labels_stale) when no label was applied for this "
        "long while decisions keep arriving (default 900)",
    )


def settings_from_args(args: argparse.Namespace) -> LabelSettings:
    """Settings from the parsed flags, the environment and the config file."""
    return load_settings(LabelSettings, given_flags(LabelSettings, args), args.config)


def run_command(args: argparse.Namespace) -> int:
    from fraudstream.features.labels.worker import run

    return run(settings_from_args(args))
