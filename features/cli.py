"""The ``simulate`` and ``features compute`` commands (registered by ``fraudstream.stream.cli``).

Also runnable alone: ``python -m fraudstream.features.cli simulate --out data.parquet``.
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
from typing import TYPE_CHECKING, ClassVar

from pydantic import Field, SecretStr
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from fraudstream.features.config import KafkaSettings, add_config_flag, given_flags, load_settings
from fraudstream.features.definitions import FeatureConfig
from fraudstream.features.exceptions import DataFileError, FeatureStoreUnavailable, FraudstreamError
from fraudstream.features.kafka import add_kafka_flags
from fraudstream.features.labels.commands import add_commands
from fraudstream.features.local_store import CUSTOMER_STATE_HELP, CustomerStateKind, open_store
from fraudstream.features.store import FeatureStore

logger = logging.getLogger(__name__)
if TYPE_CHECKING:
    SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]
_console = Console(stderr=True)


def register(subparsers: SubParsers) -> None:
    """Add ``simulate`` and ``features compute`` to the ``fraudstream`` command. The
    commands import their data-file and simulation code (pandas, pyarrow) when they run:
    ``features run``, the label worker, needs none of it."""
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
    a = sim.add_argument
    a("--out", required=True, type=Path, help="file to write")
    a("--days", type=_positive_int, default=183, help="days of transactions (default 183)")
    a("--customers", type=_positive_int, default=5000, help="customers (default 5000)")
    a("--terminals", type=_positive_int, default=10000, help="terminals (default 10000)")
    a("--start-date", default="2018-04-01", help="first day, YYYY-MM-DD (UTC)")
    a("--seed", type=int, default=0, help="random seed: the same seed, the same data (default 0)")
    a("--format", choices=["parquet", "csv", "jsonl"], help="default: from --out, else parquet")
    sim.set_defaults(func=run_simulate)


def _add_compute(commands: SubParsers) -> None:
    comp = commands.add_parser(
        "compute", help="replay a file through a feature store and write the features"
    )
    a = comp.add_argument
    a("--data", required=True, type=Path, help="file or folder of transactions")
    a("--out", required=True, type=Path, help="Parquet file to write")
    a(
        "--store",
        required=True,
        choices=["redis", "memory"],
        help="the Redis online store, or the in-process one used offline",
    )
    a(
        "--label-delay-days",
        type=_positive_int,
        default=7,
        help="label delay of the terminal features (default 7)",
    )
    a(
        "--redis-url",
        "--redis",
        dest="redis_url",
        default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        help="Redis URL for --store redis (default: $REDIS_URL or redis://127.0.0.1:6379/0)",
    )
    a(
        "--redis-prefix",
        "--prefix",
        dest="redis_prefix",
        help="Redis key prefix (default: a fresh one, deleted after)",
    )
    a("--keep-keys", action="store_true", help="keep the Redis keys afterwards")
    a(
        "--customer-state",
        choices=["redis", "local"],
        default="redis",
        help=f"with --store redis: {CUSTOMER_STATE_HELP}",
    )
    a("--batch-size", type=_positive_int, default=512, help="transactions per store call")
    a(
        "--map",
        "--column-map",
        dest="column_map",
        default="",
        metavar="FIELD=COLUMN,...",
        help="column names of the file, for other names than the contract's",
    )
    a("--skip-bad", action="store_true", help="drop bad rows instead of failing")
    comp.set_defaults(func=run_compute)


class RebuildSettings(KafkaSettings):
    """What ``fraudstream features rebuild`` needs; the names and defaults are serve's, whose
    store it rebuilds (``group_id`` is serve's consumer group)."""

    config_table: ClassVar[str] = "features.rebuild"
    redis_url: SecretStr
    """Feature store URL (never logged)."""
    redis_prefix: str = Field(default="fs", pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    """Key prefix of the feature store."""
    input_topic: str = "transactions"
    """Topic of transactions."""
    group_id: str = "fraudstream"
    """serve's consumer group: the transactions are re-read up to its committed offsets."""
    labels_topic: str = "fraud.labels"
    """Topic of fraud labels."""
    labels_group_id: str | None = None
    """The label worker's group: labels are re-read up to its committed offsets."""
    no_labels: bool = False
    """Re-apply transactions only."""
    customer_state: CustomerStateKind = "redis"
    """The kind of store serve runs (``--customer-state``): the prefix keeps its kind."""


def _add_rebuild(commands: SubParsers) -> None:
    rb = commands.add_parser(
        "rebuild",
        help="re-apply to Redis what it lost, from the transactions and labels topics",
        description="Compares the store's offset marks with the scorer group's committed "
        "offsets and re-reads what is missing (the whole feature horizon when the store was "
        "emptied). Safe while serve runs. Every flag also comes from FRAUDSTREAM_<FLAG> or a "
        "TOML file (--config or FRAUDSTREAM_CONFIG: its [common] and [features.rebuild] "
        "tables), named as for serve.",
    )
    add_config_flag(rb, "features.rebuild")
    add_kafka_flags(rb)
    a = rb.add_argument
    a(
        "--redis-url",
        help="feature store, redis://, rediss:// or unix:// (or FRAUDSTREAM_REDIS_URL)",
    )
    a("--redis-prefix", help="feature key prefix (default fs)")
    a("--customer-state", choices=["redis", "local"], help=CUSTOMER_STATE_HELP)
    a("--input-topic", help="serve's input topic (default transactions)")
    a("--group-id", help="serve's consumer group (default fraudstream)")
    a("--labels-topic", help="topic of fraud labels (default fraud.labels)")
    a("--labels-group-id", help="label worker group: read labels up to its committed offsets")
    a("--no-labels", action="store_true", default=None, help="do not re-apply labels")
    a("--dry-run", action="store_true", help="print the plan, apply nothing")
    rb.set_defaults(func=run_rebuild)


def run_rebuild(args: argparse.Namespace) -> int:
    """``fraudstream features rebuild``."""
    from fraudstream.features.rebuild import rebuild

    settings = load_settings(RebuildSettings, given_flags(RebuildSettings, args), args.config)
    store = open_store(
        settings.redis_url.get_secret_value(),
        settings.redis_prefix,
        customer_state=settings.customer_state,
        socket_timeout_s=60.0,
        connect_timeout_s=5.0,
    )
    try:
        report = rebuild(
            store,
            settings.kafka().to_librdkafka(),
            settings.input_topic,
            settings.group_id,
            None if settings.no_labels else settings.labels_topic,
            settings.labels_group_id,
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
    from fraudstream.features.datafile import write_transactions
    from fraudstream.features.datafile_formats import FORMATS
    from fraudstream.features.simulator import SimulatorConfig, simulate, summarize

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
    import pandas as pd

    from fraudstream.features.datafile import parse_column_map, read_transactions
    from fraudstream.features.replay import replay

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
        from fraudstream.features.memory_store import MemoryStore

        yield MemoryStore(config)
        return
    prefix = args.redis_prefix or f"fscompute-{uuid.uuid4().hex[:8]}"
    store = open_store(args.redis_url, prefix, config, customer_state=args.customer_state)
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
    parser = argparse.ArgumentParser(prog="python -m fraudstream.features.cli")
    register(parser.add_subparsers(dest="command", metavar="COMMAND", required=True))
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except FraudstreamError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
