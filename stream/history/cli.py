"""Registers ``fraudstream replay`` and ``fraudstream backtest``: flags, settings, progress
and the one-line summaries; the work itself is in ``stream.replay`` and ``stream.backtest``."""

from __future__ import annotations

import argparse
import logging
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import Field, SecretStr
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from fraudstream.features.config import KafkaSettings, add_config_flag, load_settings
from fraudstream.features.datafile import (
    parse_column_map,
    read_transactions,
    read_transactions_report,
)
from fraudstream.features.definitions import FeatureConfig
from fraudstream.features.exceptions import ConfigError
from fraudstream.features.kafka import add_kafka_flags
from fraudstream.features.local_store import CUSTOMER_STATE_HELP, CustomerStateKind
from fraudstream.models.protocol import day_start_ms, iso_ms
from fraudstream.stream.commands import SETTINGS_SOURCES, flags_of
from fraudstream.stream.exceptions import StreamError
from fraudstream.stream.history import backtest as bt
from fraudstream.stream.history import replay as rp
from fraudstream.stream.history.report import ReportInputs, write_report
from fraudstream.stream.kafka.connection import ensure_reachable
from fraudstream.stream.settings import DEVICE_PATTERN

if TYPE_CHECKING:
    from fraudstream.models.scorer import Scorer

logger = logging.getLogger(__name__)

SubParsers = argparse._SubParsersAction


class ReplaySettings(KafkaSettings):
    """Everything ``fraudstream replay`` needs (flags, ``FRAUDSTREAM_*`` variables, config)."""

    config_table: ClassVar[str] = "replay"

    data: Path
    """Transactions file or folder (Parquet, CSV, JSON Lines)."""
    topic: str = "transactions"
    """Topic for transactions."""
    labels_topic: str = "fraud.labels"
    """Topic for fraud labels."""
    no_labels: bool = False
    """Send transactions only."""
    label_delay_days: float = Field(default=7.0, ge=0)
    """A fraud's label is sent this long after its event time."""
    speed: str | None = None
    """max, realtime or Nx."""
    rate: float | None = Field(default=None, gt=0)
    """Fixed rate, transactions per second."""
    from_time: str | None = None
    """Start of the window, inclusive."""
    to_time: str | None = None
    """End of the window, exclusive."""
    column_map: str | None = None
    """FIELD=COLUMN,... for files with other column names."""
    start_after: str | None = None
    """Resume after this transaction id."""
    skip_bad: bool = False
    """Skip bad rows (reported) instead of stopping."""


class BacktestSettings(KafkaSettings):
    """Everything ``fraudstream backtest`` needs; Kafka only with ``--via-kafka``."""

    config_table: ClassVar[str] = "backtest"

    bootstrap_servers: str | None = None  # type: ignore[assignment]
    """Kafka bootstrap servers (``--via-kafka`` only)."""
    data: Path
    """Transactions with labels (Parquet, CSV, JSON Lines; a file or a folder)."""
    registry: Path
    """Model registry folder."""
    model: str | None = None
    """Version under test (default: CURRENT)."""
    challenger: str | None = None
    """Version compared side by side."""
    test_start: str
    """First test day, YYYY-MM-DD."""
    test_days: int = Field(default=7, ge=1)
    """Test days."""
    delay_days: int = Field(default=7, ge=1)
    """Label delay (the protocol's gap; labels reach the store this late)."""
    train_days: int = Field(default=7, ge=1)
    """Training window before the delay, for the protocol's exclusions."""
    store: Literal["memory", "redis"] = "memory"
    """Feature store of the backtest."""
    redis_url: SecretStr | None = None
    """Redis for --store redis (own unique prefix) and for serve's store (--via-kafka)."""
    redis_prefix: str = "fs"
    """Serve's feature key prefix (--via-kafka)."""
    customer_state: CustomerStateKind = "redis"
    """The kind of store serve runs (--via-kafka primes it; ``--customer-state``)."""
    report: Path
    """Report directory."""
    column_map: str | None = None
    """FIELD=COLUMN,... for files with other column names."""
    skip_bad: bool = False
    """Skip bad rows (reported) instead of stopping."""
    batch_size: int = Field(default=1024, ge=1, le=65_536)
    """Largest micro-batch."""
    device: str = Field(default="auto", pattern=DEVICE_PATTERN)
    """Scoring device: auto, cpu, cuda or cuda:N."""
    k: int = Field(default=100, ge=1)
    """Customers per day for card precision."""
    via_kafka: bool = False
    """Also send the test window through a running serve."""
    input_topic: str = "transactions"
    """Serve's input topic."""
    decisions_topic: str = "fraud.decisions"
    """Serve's decisions topic."""
    rate: float | None = Field(default=None, gt=0)
    """Transactions per second to serve (default: as fast as possible)."""
    decisions_timeout_s: float = Field(default=300.0, gt=0)
    """Longest wait for one phase's decisions."""


def register(subparsers: SubParsers[argparse.ArgumentParser]) -> None:
    """Add ``replay`` and ``backtest`` to the ``fraudstream`` command."""
    _add_replay(subparsers)
    _add_backtest(subparsers)


def _add_replay(subparsers: SubParsers[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "replay",
        help="publish history into Kafka at any pace, with delayed fraud labels",
        description="Transactions in event-time order keyed by customer; a label for each "
        "fraud at its event time + the label delay, interleaved in time order. --from/--to "
        "select [from, to): transactions by event time, labels by label time. " + SETTINGS_SOURCES,
    )
    add_config_flag(p, "replay")
    a = p.add_argument
    a("--data", type=Path, required=True, help="file or folder (Parquet, CSV, JSON Lines)")
    a("--topic", help="transactions topic (default transactions)")
    a("--labels-topic", help="labels topic (default fraud.labels)")
    a("--no-labels", action="store_true", default=None, help="send no labels")
    a("--label-delay-days", type=float, help="label delay in days (default 7)")
    pace = p.add_mutually_exclusive_group()
    pace.add_argument("--speed", help="max (default), realtime, or Nx: N seconds of event time/s")
    pace.add_argument("--rate", type=float, help="fixed rate in transactions per second")
    a("--from", dest="from_time", metavar="DATE", help="first event time (inclusive)")
    a("--to", dest="to_time", metavar="DATE", help="last event time (exclusive)")
    a("--map", dest="column_map", metavar="FIELD=COLUMN,...", help="column names of the file")
    a("--start-after", metavar="TRANSACTION_ID", help="resume after this transaction")
    a(
        "--skip-bad",
        action="store_true",
        default=None,
        help="skip bad rows (reported) instead of stopping",
    )
    add_kafka_flags(p)
    p.set_defaults(func=guarded(run_replay))


def _add_backtest(subparsers: SubParsers[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "backtest",
        help="backtest models over history with the live code path",
        description="Replays history in event-time order through a feature store (labels at "
        "event time + delay), scores the test window through the serve pipeline, and reports "
        "the protocol's metrics. --via-kafka also sends the test window through a running "
        "serve (it primes serve's Redis store, --redis-url/--redis-prefix, with the history). "
        + SETTINGS_SOURCES,
    )
    add_config_flag(p, "backtest")
    a = p.add_argument
    a("--data", type=Path, required=True, help="file or folder with is_fraud")
    a("--registry", type=Path, required=True, help="model registry folder")
    a("--model", metavar="VERSION", help="version under test (default: CURRENT)")
    a("--challenger", metavar="VERSION", help="a second version, side by side")
    a("--test-start", required=True, metavar="YYYY-MM-DD", help="first test day")
    a("--test-days", type=int, help="test days (default 7)")
    a("--delay-days", type=int, help="label delay in days (default 7)")
    a("--train-days", type=int, help="training days before the delay (default 7)")
    a("--store", choices=["memory", "redis"], help="feature store (default memory)")
    a("--redis-url", help="Redis for --store redis and for serve's store with --via-kafka")
    a("--redis-prefix", help="serve's key prefix with --via-kafka (default fs)")
    a(
        "--customer-state",
        choices=["redis", "local"],
        help=f"serve's, with --via-kafka: {CUSTOMER_STATE_HELP}",
    )
    a("--report", type=Path, required=True, metavar="DIR", help="report directory")
    a("--map", dest="column_map", metavar="FIELD=COLUMN,...", help="column names of the file")
    a(
        "--skip-bad",
        action="store_true",
        default=None,
        help="skip bad rows (reported) instead of stopping",
    )
    a("--batch-size", type=int, help="largest micro-batch (default 1024)")
    a("--device", help="scoring device: auto (default), cpu, cuda or cuda:N")
    a("--k", type=int, help="customers per day for card precision (default 100)")
    a(
        "--via-kafka",
        action="store_true",
        default=None,
        help="also score the test window through serve",
    )
    a("--input-topic", help="serve's input topic (default transactions)")
    a("--decisions-topic", help="serve's decisions topic (default fraud.decisions)")
    a("--rate", type=float, help="tx/s sent to serve (default: as fast as possible)")
    a("--decisions-timeout-s", type=float, help="wait per phase for decisions (default 300)")
    add_kafka_flags(p)
    p.set_defaults(func=guarded(run_backtest))


def guarded(command: Any) -> Any:
    """Files that cannot be read or written become one ``error:`` line and exit status 2."""

    def run(args: argparse.Namespace) -> int:
        try:
            return int(command(args))
        except OSError as exc:
            print(f"error: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
            return 2

    return run


def run_replay(args: argparse.Namespace) -> int:
    """``fraudstream replay``: 0 when every message was acknowledged."""
    settings = load_settings(ReplaySettings, flags_of(args), args.config)
    pace = _pace(settings)
    table = load_table(settings.data, settings.column_map, settings.skip_bad)
    plan = _plan(settings, table)
    if len(plan) == 0:
        print("replay: nothing to send in the selected window", file=sys.stderr)
    conn = settings.kafka()
    ensure_reachable(conn, timeout_s=15.0)
    stats = _send(settings, conn, plan, pace)
    print(summary_line(settings, stats, pace))
    return 0 if stats.failed == 0 else 1


def _pace(settings: ReplaySettings) -> rp.Pace:
    if settings.rate is not None:
        return rp.rate_pace(settings.rate)
    return rp.parse_speed(settings.speed or "max")


def load_table(data: Path, column_map: str | None, skip_bad: bool) -> pd.DataFrame:
    """The canonical table; bad rows stop the command unless ``skip_bad`` (then reported)."""
    mapping = parse_column_map(column_map) if column_map else None
    if not skip_bad:
        return read_transactions(data, mapping)
    table, bad = read_transactions_report(data, mapping)
    if bad:
        print(f"skipped {len(bad)} bad row(s); first: {bad[0]}", file=sys.stderr)
    return table


def _plan(settings: ReplaySettings, table: pd.DataFrame) -> rp.ReplayPlan:
    start = rp.parse_time_ms(settings.from_time, "--from") if settings.from_time else None
    end = rp.parse_time_ms(settings.to_time, "--to") if settings.to_time else None
    if start is not None and end is not None and end <= start:
        msg = f"--to {settings.to_time} is not after --from {settings.from_time}"
        raise ConfigError(msg)
    delay = None if settings.no_labels else rp.label_delay_ms(settings.label_delay_days)
    plan = rp.build_plan(table, delay, start, end)
    return plan.after(settings.start_after) if settings.start_after else plan


def _send(settings: ReplaySettings, conn: Any, plan: rp.ReplayPlan, pace: rp.Pace) -> rp.SendStats:
    from confluent_kafka import Producer  # keep --help fast

    failures = rp.DeliveryFailures()
    producer = Producer(rp.producer_config(conn, pace, failures))
    topics = [settings.topic] + ([settings.labels_topic] if plan.labels else [])
    rp.check_topics(producer, topics)
    sender = rp.Sender(
        producer, settings.topic, settings.labels_topic, failures=lambda: failures.count
    )
    try:
        with progress_bar("replay", plan.transactions) as advance:
            stats = sender.send(plan, pace, advance)
    except KeyboardInterrupt:
        _interrupted(producer, plan, sender.handed_over)
        raise
    rp.raise_if_fatal(failures)
    return stats


def _interrupted(producer: Any, plan: rp.ReplayPlan, handed_over: int) -> None:
    """Deliver what was handed over, and say where to resume."""
    left = producer.flush(30)
    last = plan.last_transaction(handed_over)
    print(f"interrupted after {handed_over:,} messages ({left} undelivered)", file=sys.stderr)
    if last is not None and left == 0:
        print(f"resume with --start-after {last}", file=sys.stderr)


def summary_line(settings: ReplaySettings, stats: rp.SendStats, pace: rp.Pace) -> str:
    labels = (
        "" if settings.no_labels else f" and {stats.labels:,} labels to {settings.labels_topic}"
    )
    text = (
        f"replay: {stats.transactions:,} transactions to {settings.topic}{labels}; "
        f"sent {stats.sent:,}, failed {stats.failed:,}; elapsed {stats.elapsed_s:.2f} s; "
        f"achieved {stats.achieved_rate:,.0f} tx/s"
    )
    if pace.mode == "max" and stats.elapsed_s > 0:
        text += f" ({stats.sent / stats.elapsed_s:,.0f} messages/s acknowledged incl. flush)"
    if pace.mode == "speed":
        text += f" ({stats.achieved_speed:,.1f}x event time, requested {pace.value:g}x)"
    elif pace.mode == "rate":
        text += f" (requested {pace.value:g} tx/s)"
    return text


def run_backtest(args: argparse.Namespace) -> int:
    """``fraudstream backtest``: 0 unless ``--via-kafka`` found serve's scores different."""
    settings = load_settings(BacktestSettings, flags_of(args), args.config)
    _check_backtest(settings)
    window = bt.Window(
        day_start_ms(settings.test_start),
        settings.test_days,
        settings.delay_days,
        settings.train_days,
        settings.k,
    )
    table = load_table(settings.data, settings.column_map, settings.skip_bad)
    config = FeatureConfig()
    champion, challenger = _models(settings, config)
    with open_store(settings, config) as store:
        engine = bt.Backtest(store, champion, challenger, config, settings.batch_size)
        with progress_bar("backtest", _rows_to_replay(table, window, config)) as advance:
            result = replace(engine, progress=advance).run(table, window)
    live = _live(settings, table, result, config) if settings.via_kafka else None
    write_report(ReportInputs(result, _run_facts(settings, champion), live), settings.report)
    for line in backtest_summary(result, live):
        print(line)
    print(f"report: {settings.report / 'report.md'}")
    return 0 if live is None or _live_ok(live) else 1


def _check_backtest(settings: BacktestSettings) -> None:
    if (settings.store == "redis" or settings.via_kafka) and settings.redis_url is None:
        why = "--store redis" if settings.store == "redis" else "--via-kafka (serve's store)"
        msg = f"{why} needs --redis-url (or FRAUDSTREAM_REDIS_URL)"
        raise ConfigError(msg)
    if settings.via_kafka and not settings.bootstrap_servers:
        msg = "--via-kafka needs --bootstrap-servers (or FRAUDSTREAM_BOOTSTRAP_SERVERS)"
        raise ConfigError(msg)


def _models(settings: BacktestSettings, config: FeatureConfig) -> tuple[Scorer, Scorer | None]:
    from fraudstream.models.registry import Registry
    from fraudstream.models.scorer import Scorer

    registry = Registry(settings.registry)
    champion = Scorer.load(registry, settings.model, settings.device, config)
    challenger = None
    if settings.challenger:
        challenger = Scorer.load(registry, settings.challenger, settings.device, config)
    return champion, challenger


def _rows_to_replay(table: pd.DataFrame, window: bt.Window, config: FeatureConfig) -> int:
    ms = table["event_time_ms"].to_numpy()
    lo = np.searchsorted(ms, window.history_start_ms(config), side="left")
    return int(np.searchsorted(ms, window.test_end_ms, side="left") - lo)


@contextmanager
def open_store(settings: BacktestSettings, config: FeatureConfig) -> Iterator[Any]:
    """The backtest's own store: in memory, or Redis under a prefix unique to this run
    (deleted at the end)."""
    from fraudstream.features.memory_store import MemoryStore
    from fraudstream.features.redis_store import RedisStore

    if settings.store == "memory":
        yield MemoryStore(config)
        return
    assert settings.redis_url is not None
    prefix = f"backtest-{uuid.uuid4().hex[:12]}"
    store = RedisStore.from_url(
        settings.redis_url.get_secret_value(), prefix=prefix, config=config, socket_timeout_s=60
    )
    try:
        yield store
    finally:
        try:
            store.drop()
        finally:
            store.close()


def _live(
    settings: BacktestSettings,
    table: pd.DataFrame,
    result: bt.BacktestResult,
    config: FeatureConfig,
) -> bt.LiveRun:
    from confluent_kafka import Consumer, Producer

    from fraudstream.features.local_store import open_store as open_serve_store

    conn = settings.kafka()
    ensure_reachable(conn, timeout_s=15.0)
    pace = rp.rate_pace(settings.rate) if settings.rate else rp.Pace("max")
    failures = rp.DeliveryFailures()
    producer = Producer(rp.producer_config(conn, pace, failures))
    rp.check_topics(producer, [settings.input_topic])
    sender = rp.Sender(
        producer, settings.input_topic, settings.input_topic, failures=lambda: failures.count
    )

    def publish(frame: pd.DataFrame) -> int:
        stats = sender.send(rp.build_plan(frame, None), pace)
        rp.raise_if_fatal(failures)
        if stats.failed:
            msg = f"{stats.failed} transaction(s) were not acknowledged by the broker"
            raise StreamError(msg)
        return stats.transactions

    assert settings.redis_url is not None
    serve_store = open_serve_store(
        settings.redis_url.get_secret_value(),
        settings.redis_prefix,
        config,
        customer_state=settings.customer_state,
        socket_timeout_s=60,
    )
    consumer = Consumer(
        conn.to_librdkafka()
        | {
            "group.id": f"backtest-{uuid.uuid4().hex[:12]}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    reader = bt.DecisionReader(consumer, settings.decisions_topic).open()
    try:
        live = bt.LiveBacktest(
            serve_store, publish, reader, config, settings.batch_size, settings.decisions_timeout_s
        )
        return live.run(table, result)
    finally:
        reader.close()
        serve_store.close()


def _live_ok(live: bt.LiveRun) -> bool:
    return bool(live.mismatched == 0 and live.received == live.sent)


def _run_facts(settings: BacktestSettings, champion: Scorer) -> dict[str, Any]:
    return {
        "data": str(settings.data),
        "registry": str(settings.registry),
        "store": settings.store,
        "batch_size": settings.batch_size,
        "device": champion.device,
        "via_kafka": settings.via_kafka,
    }


def backtest_summary(result: bt.BacktestResult, live: bt.LiveRun | None) -> list[str]:
    """The lines printed at the end of a backtest."""
    w, split = result.window, result.split
    lines = [
        f"backtest: {settings_text(result)}; {split.test_rows.size:,} test transactions "
        f"({split.excluded_rows:,} excluded), {result.replayed:,} replayed, "
        f"{result.labels_fed:,} labels fed, {result.timings_s['total_s']:.1f} s"
    ]
    names = ("roc_auc", "average_precision", f"card_precision_at_{w.k}", "alert_rate")
    runs = [result.champion] + ([result.challenger] if result.challenger else [])
    for run in runs:
        values = "  ".join(f"{n} {run.metrics[n]:.4f}" for n in names)
        lines.append(f"  {run.version}: {values}")
    rungs = result.champion.rungs
    if rungs:
        per_rung = ", ".join(f"{r} {m['average_precision']:.4f}" for r, m in rungs.items())
        lines.append(f"  average precision per rung of the ladder: {per_rung}")
    if live is not None:
        verdict = "yes" if _live_ok(live) else "NO"
        p = np.quantile(live.latency_ms, [0.5, 0.99]) if live.latency_ms.size else [np.nan] * 2
        lines.append(
            f"  live: {live.sent:,} sent, {live.received:,} decided; full-path scores equal the "
            f"backtest's: {verdict} ({live.compared:,} compared, {live.mismatched} differ); "
            f"latency p50 {p[0]:.1f} ms, p99 {p[1]:.1f} ms; rungs {live.degraded}"
        )
    return lines


def settings_text(result: bt.BacktestResult) -> str:
    start = iso_ms(result.split.test_start_ms)[:10]
    return f"model {result.champion.version}, test {start} + {result.window.test_days} days"


class RateColumn(ProgressColumn):
    """Items per second, as rich measures it."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} tx/s" if speed else "- tx/s", style="progress.data.speed")


@contextmanager
def progress_bar(title: str, total: int) -> Iterator[Any]:
    """A progress bar with rate and ETA on a terminal; nothing when stderr is not one."""
    console = Console(stderr=True)
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, disable=not console.is_terminal) as progress:
        task = progress.add_task(title, total=total)

        def advance(done: int) -> None:
            progress.update(task, completed=done)

        yield advance
