"""The ``simulate`` and ``features compute`` commands (registered by ``stream.cli``).

Also runnable alone: ``python -m features.cli simulate --out data.parquet``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from features.datafile import parse_column_map, read_transactions, write_transactions
from features.datafile_formats import FORMATS
from features.definitions import FeatureConfig
from features.exceptions import DataFileError, FeatureStoreUnavailable, FraudstreamError
from features.labels.commands import add_commands
from features.memory_store import MemoryStore
from features.redis_store import RedisStore
from features.replay import replay
from features.simulator import SimulatorConfig, simulate, summarize
from features.store import FeatureStore

logger = logging.getLogger(__name__)
if TYPE_CHECKING:
    SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]
_console = Console(stderr=True)


def register(subparsers: SubParsers) -> None:
    """Add ``simulate`` and ``features compute`` to the ``fraudstream`` command."""
    _add_simulate(subparsers)
    features = subparsers.add_parser("features", help="feature store tools")
    commands = features.add_subparsers(dest="features_command", metavar="SUBCOMMAND")
    commands.required = True
    _add_compute(commands)
    add_commands(commands)
    _add_rebuild(commands)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        msg = f"expected a whole number >= 1, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _add_simulate(subparsers: SubParsers) -> None:
    sim = subparsers.add_parser(
        "simulate", help="generate the handbook's synthetic transactions with fraud"
    )
    sim.add_argument("--out", required=True, type=Path, help="file to write")
    sim.add_argument("--days", type=_positive_int, default=183)
    sim.add_argument("--customers", type=_positive_int, default=5000)
    sim.add_argument("--terminals", type=_positive_int, default=10000)
    sim.add_argument("--start-date", default="2018-04-01", help="first day, YYYY-MM-DD (UTC)")
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument(
        "--format", choices=["parquet", "csv", "jsonl"], help="default: from --out, else parquet"
    )
    sim.set_defaults(func=run_simulate)


def _add_compute(commands: SubParsers) -> None:
    comp = commands.add_parser(
        "compute", help="replay a file through a feature store and write the features"
    )
    comp.add_argument("--data", required=True, type=Path, help="file or folder of transactions")
    comp.add_argument("--out", required=True, type=Path, help="Parquet file to write")
    comp.add_argument("--store", required=True, choices=["redis", "memory"])
    comp.add_argument("--label-delay-days", type=_positive_int, default=7)
    comp.add_argument(
        "--redis",
        default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        help="Redis URL (default: $REDIS_URL or redis://127.0.0.1:6379/0)",
    )
    comp.add_argument("--prefix", help="Redis key prefix (default: a fresh one, deleted after)")
    comp.add_argument("--keep-keys", action="store_true", help="keep the Redis keys afterwards")
    comp.add_argument("--batch-size", type=_positive_int, default=512)
    comp.add_argument("--column-map", default="", help="FIELD=COLUMN,... for other column names")
    comp.add_argument("--skip-bad", action="store_true", help="drop bad rows instead of failing")
    comp.set_defaults(func=run_compute)


def _add_rebuild(commands: SubParsers) -> None:
    rb = commands.add_parser(
        "rebuild",
        help="re-apply to Redis what it lost, from the transactions and labels topics",
        description="Compares the store's offset marks with the scorer group's committed "
        "offsets and re-reads what is missing (the whole feature horizon when the store was "
        "emptied). Safe while serve runs. Security flags as for 'features run'; the SASL "
        "password comes from FRAUDSTREAM_SASL_PASSWORD or --sasl-password-file only.",
    )
    a = rb.add_argument
    a("--bootstrap-servers", metavar="HOST:PORT", help="Kafka bootstrap servers")
    a("--redis-url", help="feature store, redis://, rediss:// or unix://")
    a("--redis-prefix", help="feature key prefix (default fs)")
    a("--input-topic", default="transactions", help="default transactions")
    a("--group-id", default="fraudstream", help="serve's consumer group (default fraudstream)")
    a("--labels-topic", help="default fraud.labels")
    a("--labels-group-id", help="label worker group: read labels up to its committed offsets")
    a("--no-labels", action="store_true", help="do not re-apply labels")
    a("--security-protocol", choices=["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"])
    a("--sasl-mechanism", choices=["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
    a("--sasl-username")
    a("--sasl-password-file", type=Path, help="file holding the SASL password")
    a("--ssl-ca-location", type=Path, help="CA bundle for the brokers")
    a("--ssl-certificate-location", type=Path, help="client certificate (mutual TLS)")
    a("--ssl-key-location", type=Path, help="client key (mutual TLS)")
    a("--dry-run", action="store_true", help="print the plan, apply nothing")
    rb.set_defaults(func=run_rebuild)


def run_rebuild(args: argparse.Namespace) -> int:
    """``fraudstream features rebuild``."""
    from features.labels.settings import load_settings
    from features.rebuild import kafka_conf, rebuild

    names: tuple[str, ...] = ("bootstrap_servers", "redis_url", "redis_prefix", "labels_topic")
    names += ("security_protocol", "sasl_mechanism", "sasl_username", "sasl_password_file")
    names += ("ssl_ca_location", "ssl_certificate_location", "ssl_key_location")
    settings = load_settings({k: getattr(args, k) for k in names})
    store = RedisStore.from_url(
        settings.redis_url.get_secret_value(),
        prefix=settings.redis_prefix,
        socket_timeout_s=60.0,
        connect_timeout_s=5.0,
    )
    try:
        report = rebuild(
            store,
            kafka_conf(settings),
            args.input_topic,
            args.group_id,
            None if args.no_labels else settings.labels_topic,
            args.labels_group_id,
            dry_run=args.dry_run,
            echo=lambda line: print(line, flush=True),
        )
    finally:
        store.close()
    lines = report.lines()
    print("\n".join(lines if args.dry_run else lines[len(report.partitions) :]))
    return 0


def run_simulate(args: argparse.Namespace) -> int:
    """``fraudstream simulate``."""
    config = SimulatorConfig(
        n_customers=args.customers,
        n_terminals=args.terminals,
        n_days=args.days,
        start_date=args.start_date,
        seed=args.seed,
    )
    fmt = args.format or FORMATS.get(args.out.suffix.lower(), "parquet")
    started = time.perf_counter()
    with _progress() as bar:
        task = bar.add_task("simulating", total=1.0)
        df = simulate(config, lambda step, done: bar.update(task, completed=done, description=step))
        bar.update(task, description="writing")
        try:
            path = write_transactions(df, args.out, fmt)
        except OSError as exc:
            msg = f"cannot write {args.out}: {exc.strerror or exc}"
            raise DataFileError(msg) from exc
    summary = summarize(df)
    rates = ", ".join(f"{k}: {v:.3%}" for k, v in summary.fraud_rate_by_scenario.items())
    print(
        f"wrote {summary.n_transactions:,} transactions to {path} "
        f"in {time.perf_counter() - started:.1f} s; fraud {summary.fraud_rate:.3%} "
        f"(by scenario {rates})"
    )
    return 0


def run_compute(args: argparse.Namespace) -> int:
    """``fraudstream features compute``."""
    config = FeatureConfig(delay_days=args.label_delay_days)
    column_map = parse_column_map(args.column_map)
    df = read_transactions(args.data, column_map, skip_bad=args.skip_bad)
    started = time.perf_counter()
    with _open_store(args, config) as store, _progress() as bar:
        task = bar.add_task(f"{args.store} store", total=len(df))
        values = replay(
            store, df, config, args.batch_size, lambda done: bar.update(task, completed=done)
        )
    elapsed = time.perf_counter() - started
    out = pd.DataFrame(values, columns=list(config.feature_names))
    out.insert(0, "transaction_id", df["transaction_id"].to_numpy())
    try:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        out.to_parquet(args.out, index=False)
    except OSError as exc:
        msg = f"cannot write {args.out}: {exc.strerror or exc}"
        raise DataFileError(msg) from exc
    rate = len(df) / elapsed if elapsed > 0 else float("inf")
    print(
        f"computed {len(df):,} feature vectors through the {args.store} store in "
        f"{elapsed:.1f} s ({rate:,.0f} transactions/s) -> {args.out}"
    )
    return 0


@contextmanager
def _open_store(args: argparse.Namespace, config: FeatureConfig) -> Iterator[FeatureStore]:
    if args.store == "memory":
        yield MemoryStore(config)
        return
    prefix = args.prefix or f"fscompute-{uuid.uuid4().hex[:8]}"
    store = RedisStore.from_url(args.redis, prefix=prefix, config=config)
    try:
        yield store
    finally:
        if not args.keep_keys:
            try:
                store.drop()
            except FeatureStoreUnavailable:
                logger.warning("could not delete the keys under prefix %s", prefix)
        store.close()


@contextmanager
def _progress() -> Iterator[Progress]:
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=_console,
        transient=True,
    )
    with bar:
        yield bar


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone entry point with the same error handling as ``fraudstream``."""
    parser = argparse.ArgumentParser(prog="python -m features.cli")
    register(parser.add_subparsers(dest="command", metavar="COMMAND", required=True))
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except FraudstreamError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
