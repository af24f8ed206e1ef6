"""Registers ``fraudstream replay`` and ``fraudstream backtest``: flags, settings, progress
and the one-line summaries; the work itself is in ``stream.replay`` and ``stream.backtest``."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import Field
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

from features.datafile import parse_column_map, read_transactions, read_transactions_report
from features.exceptions import ConfigError
from stream import replay as rp
from stream.commands import add_kafka_flags, flags_of
from stream.kafka.connection import ensure_reachable
from stream.settings import KafkaSecurity, load_settings

logger = logging.getLogger(__name__)

SubParsers = argparse._SubParsersAction


class ReplaySettings(KafkaSecurity):
    """Everything ``fraudstream replay`` needs (flags, ``FRAUDSTREAM_*`` variables)."""

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


def register(subparsers: SubParsers[argparse.ArgumentParser]) -> None:
    """Add ``replay`` and ``backtest`` to the ``fraudstream`` command."""
    _add_replay(subparsers)


def _add_replay(subparsers: SubParsers[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "replay",
        help="publish history into Kafka at any pace, with delayed fraud labels",
        description="Transactions in event-time order keyed by customer; a label for each "
        "fraud at its event time + the label delay, interleaved in time order. --from/--to "
        "select [from, to): transactions by event time, labels by label time.",
    )
    a = p.add_argument
    a("--data", type=Path, required=True, help="file or folder (Parquet, CSV, JSON Lines)")
    a("--topic", help="transactions topic (default transactions)")
    a("--labels-topic", help="labels topic (default fraud.labels)")
    a("--no-labels", action="store_true", help="send no labels")
    a("--label-delay-days", type=float, help="label delay in days (default 7)")
    pace = p.add_mutually_exclusive_group()
    pace.add_argument("--speed", help="max (default), realtime, or Nx: N seconds of event time/s")
    pace.add_argument("--rate", type=float, help="fixed rate in transactions per second")
    a("--from", dest="from_time", metavar="DATE", help="first event time (inclusive)")
    a("--to", dest="to_time", metavar="DATE", help="last event time (exclusive)")
    a("--map", dest="column_map", metavar="FIELD=COLUMN,...", help="column names of the file")
    a("--start-after", metavar="TRANSACTION_ID", help="resume after this transaction")
    a("--skip-bad", action="store_true", help="skip bad rows (reported) instead of stopping")
    add_kafka_flags(p)
    p.set_defaults(func=run_replay)


def run_replay(args: argparse.Namespace) -> int:
    """``fraudstream replay``: 0 when every message was acknowledged."""
    settings: ReplaySettings = load_settings(ReplaySettings, flags_of(args), None)
    pace = _pace(settings)
    table = load_table(settings.data, settings.column_map, settings.skip_bad)
    plan = _plan(settings, table)
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
    topics = [settings.topic] + ([] if settings.no_labels else [settings.labels_topic])
    rp.check_topics(producer, topics)
    sender = rp.Sender(
        producer, settings.topic, settings.labels_topic, failures=lambda: failures.count
    )
    with progress_bar("replay", plan.transactions) as advance:
        stats = sender.send(plan, pace, advance)
    rp.raise_if_fatal(failures)
    return stats


def summary_line(settings: ReplaySettings, stats: rp.SendStats, pace: rp.Pace) -> str:
    labels = (
        "" if settings.no_labels else f" and {stats.labels:,} labels to {settings.labels_topic}"
    )
    text = (
        f"replay: {stats.transactions:,} transactions to {settings.topic}{labels}; "
        f"sent {stats.sent:,}, failed {stats.failed:,}; elapsed {stats.elapsed_s:.2f} s; "
        f"achieved {stats.achieved_rate:,.0f} tx/s"
    )
    if pace.mode == "speed":
        text += f" ({stats.achieved_speed:,.1f}x event time, requested {pace.value:g}x)"
    elif pace.mode == "rate":
        text += f" (requested {pace.value:g} tx/s)"
    return text


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
