"""``fraudstream features run``: the command that starts the label worker."""

from __future__ import annotations

import argparse
from pathlib import Path

from features.labels.settings import LabelSettings


def add_commands(
    features_subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    """Add ``run`` under the ``features`` command."""
    run = features_subparsers.add_parser(
        "run",
        help="apply fraud labels to the feature store and serve live KPIs",
        description="Every flag also comes from FRAUDSTREAM_<FLAG> or a TOML file (--config); "
        "flags win over the environment, the environment over the file. The SASL password "
        "comes from FRAUDSTREAM_SASL_PASSWORD or --sasl-password-file only.",
    )
    add_run_flags(run)
    run.set_defaults(func=run_command)


def add_run_flags(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    a("--config", type=Path, help="TOML file with any of the settings")
    a("--bootstrap-servers", metavar="HOST:PORT", help="Kafka bootstrap servers")
    a("--redis-url", help="feature store, redis://, rediss:// or unix://")
    a("--redis-prefix", help="feature key prefix (default fs)")
    a("--group-id", help="consumer group and app id (default fraudstream-labels)")
    a("--labels-topic", help="default fraud.labels")
    a("--labels-dlq-topic", help="default fraud.labels.dlq")
    a("--decisions-topic", help="default fraud.decisions")
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
        "--labels-stale-after-s",
        type=float,
        help="warn (and set fraudstream_labels_stale) when no label was applied for this "
        "long while decisions keep arriving (default 900)",
    )
    a("--security-protocol", choices=["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"])
    a("--sasl-mechanism", choices=["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
    a("--sasl-username")
    a("--sasl-password-file", type=Path, help="file holding the SASL password")
    a("--ssl-ca-location", type=Path, help="CA bundle for the brokers")
    a("--ssl-certificate-location", type=Path, help="client certificate (mutual TLS)")
    a("--ssl-key-location", type=Path, help="client key (mutual TLS)")


def settings_from_args(args: argparse.Namespace) -> LabelSettings:
    """Settings from the parsed flags, the environment and the config file."""
    from features.labels.settings import load_settings

    fields = set(LabelSettings.model_fields)
    flags = {k: v for k, v in vars(args).items() if k in fields}
    return load_settings(flags, getattr(args, "config", None))


def run_command(args: argparse.Namespace) -> int:
    from features.labels.worker import run

    return run(settings_from_args(args))
