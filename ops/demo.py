"""`make demo`: the whole system on this machine, end to end, in a few minutes.

simulate → train and promote → start serve and the label pipeline → replay days of history
through Kafka at high speed with a live view → stop → summary → backtest report with plots.
Ctrl-C at any point stops everything it started.
"""

from __future__ import annotations

import argparse
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
console = Console()


@dataclass
class Demo:
    """The demo's settings and the processes it started."""

    bootstrap: str
    redis_url: str
    out: Path
    customers: int
    days: int
    replay_days: int
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    @property
    def data(self) -> Path:
        return self.out / "data.parquet"

    @property
    def registry(self) -> Path:
        return self.out / "registry"

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [PY, "-m", "fraudstream.stream.cli", "--plain-logs", "--log-level", "WARNING", *args]
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
        if check and done.returncode != 0:
            msg = f"`fraudstream {' '.join(args[:1])}` failed:\n{done.stdout}{done.stderr}"
            raise SystemExit(msg)
        return done

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = (self.out / f"{name}.log").open("wb")
        cmd = [PY, "-m", "fraudstream.stream.cli", "--log-level", "INFO", *args]
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(40)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.procs.clear()


def metrics_text(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as resp:  # noqa: S310
            return str(resp.read().decode())
    except OSError:
        return ""


def sample(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        m = re.match(r"^([a-z_]+)(\{[^}]*\})? ([0-9.eE+-]+|NaN)$", line)
        if not m or m.group(1) != name:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(m.group(3))
    return total


def quantile_ms(text: str, q: float) -> float:
    """A quantile of the end-to-end latency histogram (bucket upper bound)."""
    buckets = []
    for line in text.splitlines():
        m = re.match(r'^fraudstream_e2e_latency_seconds_bucket\{le="([^"]+)"\} (\S+)$', line)
        if m:
            buckets.append((float(m.group(1)), float(m.group(2))))
    if not buckets or buckets[-1][1] == 0:
        return float("nan")
    target = q * buckets[-1][1]
    return next(le for le, count in buckets if count >= target) * 1e3


def model_label(text: str) -> str:
    m = re.search(r'fraudstream_model_info\{device="([^"]*)",version="([^"]*)"\}', text)
    return f"{m.group(2)} on {m.group(1)}" if m else "none"


def view(text: str, rate: float, replayed: str) -> Table:
    table = Table(title="fraudstream — live", show_header=False, min_width=60)
    decided = sum(
        sample(text, "fraudstream_decisions_total", decision=d)
        for d in ("approve", "review", "decline")
    )
    alerts = sum(
        sample(text, "fraudstream_decisions_total", decision=d) for d in ("review", "decline")
    )
    rows = [
        ("replay", replayed),
        ("decisions", f"{decided:,.0f}"),
        ("transactions/s", f"{rate:,.0f}"),
        (
            "latency p50 / p99",
            f"{quantile_ms(text, 0.5):.1f} ms / {quantile_ms(text, 0.99):.1f} ms",
        ),
        (
            "approve / review / decline",
            " / ".join(
                f"{sample(text, 'fraudstream_decisions_total', decision=d):,.0f}"
                for d in ("approve", "review", "decline")
            ),
        ),
        (
            "alerts",
            f"{alerts:,.0f}",
        ),
        (
            "degraded (truncated / partial / rules)",
            " / ".join(
                f"{sample(text, 'fraudstream_degraded_total', rung=r):,.0f}"
                for r in ("truncated_model", "partial_features", "rules")
            ),
        ),
        ("dead letters", f"{sample(text, 'fraudstream_dead_letters_total'):,.0f}"),
        ("model", model_label(text)),
    ]
    for key, value in rows:
        table.add_row(key, value)
    return table


def run(demo: Demo) -> int:
    demo.out.mkdir(parents=True, exist_ok=True)
    console.rule("1. simulate")
    demo.cli(
        "simulate",
        "--out",
        str(demo.data),
        "--customers",
        str(demo.customers),
        "--terminals",
        str(demo.customers * 2),
        "--days",
        str(demo.days),
        "--seed",
        "0",
    )
    console.print(f"simulated {demo.days} days for {demo.customers} customers → {demo.data}")
    console.rule("2. train and promote")
    shutil.rmtree(demo.registry, ignore_errors=True)
    train_start = "2018-04-15"
    done = demo.cli(
        "train",
        "--data",
        str(demo.data),
        "--train-start",
        train_start,
        "--registry",
        str(demo.registry),
        "--device",
        "auto",
        "--promote",
        "--review-per-day",
        str(max(1, demo.customers // 50)),
    )
    console.print(done.stdout.strip().splitlines()[-1] if done.stdout.strip() else "trained")
    console.rule("3. start serve and the label pipeline")
    topics = {
        t: f"{t}.demo-{demo.run_id}"
        for t in (
            "transactions",
            "fraud.decisions",
            "fraud.alerts",
            "transactions.dlq",
            "fraud.labels",
            "fraud.labels.dlq",
        )
    }
    create_topics(demo.bootstrap, list(topics.values()))
    port = free_port()
    common = [
        "--bootstrap-servers",
        demo.bootstrap,
        "--redis-url",
        demo.redis_url,
        "--redis-prefix",
        f"demo{demo.run_id}",
    ]
    demo.start(
        "serve",
        "serve",
        *common,
        "--registry",
        str(demo.registry),
        "--group-id",
        f"demo-{demo.run_id}",
        "--input-topic",
        topics["transactions"],
        "--decisions-topic",
        topics["fraud.decisions"],
        "--alerts-topic",
        topics["fraud.alerts"],
        "--dlq-topic",
        topics["transactions.dlq"],
        "--metrics-port",
        str(port),
    )
    demo.start(
        "labels",
        "features",
        "run",
        *common,
        "--group-id",
        f"demo-labels-{demo.run_id}",
        "--labels-topic",
        topics["fraud.labels"],
        "--labels-dlq-topic",
        topics["fraud.labels.dlq"],
        "--decisions-topic",
        topics["fraud.decisions"],
        "--web-port",
        str(labels_port := free_port()),
    )
    wait_ready(port, demo)
    console.rule("4. replay history through Kafka")
    first_day = "2018-04-01"
    last_day = f"2018-04-{1 + demo.replay_days:02d}"
    replay = subprocess.Popen(
        [
            PY,
            "-m",
            "fraudstream.stream.cli",
            "--plain-logs",
            "--log-level",
            "WARNING",
            "replay",
            "--data",
            str(demo.data),
            "--bootstrap-servers",
            demo.bootstrap,
            "--topic",
            topics["transactions"],
            "--labels-topic",
            topics["fraud.labels"],
            "--label-delay-days",
            "7",
            "--rate",
            "1000",
            "--from",
            first_day,
            "--to",
            last_day,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    demo.procs.append(replay)
    expected = count_rows(demo.data, first_day, last_day)
    text = live_view(port, expected, replay)
    replay_out = replay.stdout.read().decode() if replay.stdout else ""
    labels = labels_applied(labels_port)
    console.rule("5. stop")
    demo.stop_all()
    decided = sum(
        sample(text, "fraudstream_decisions_total", decision=d)
        for d in ("approve", "review", "decline")
    )
    console.rule("6. backtest report")
    report = demo.out / "report"
    demo.cli(
        "backtest",
        "--data",
        str(demo.data),
        "--registry",
        str(demo.registry),
        "--test-start",
        "2018-04-29",
        "--report",
        str(report),
    )
    summary(expected, decided, text, replay_out, report, labels)
    return 0 if decided == expected else 1


def labels_applied(port: int, settle_s: float = 15.0) -> float:
    """Labels the label worker put in the store, once that count stops growing: the
    labels replayed with the history reach the store (compressed or not) or the demo
    says they did not."""
    applied, still = -1.0, time.monotonic()
    deadline = time.monotonic() + settle_s
    while time.monotonic() < deadline:
        now = sample(metrics_text(port), "fraudstream_labels_applied_total")
        if now != applied:
            applied, still = now, time.monotonic()
        elif applied > 0 and time.monotonic() - still > 2:
            break
        time.sleep(0.5)
    return max(applied, 0.0)


def summary(
    expected: int, decided: float, text: str, replay_out: str, report: Path, labels: float
) -> None:
    console.rule("summary")
    console.print(f"transactions replayed: {expected:,}")
    console.print(f"decisions: {decided:,.0f}")
    console.print(
        f"latency p50 / p99: {quantile_ms(text, 0.5):.1f} ms / {quantile_ms(text, 0.99):.1f} ms"
    )
    rungs = rung_counts(text, decided)
    console.print(
        "decisions per rung of the latency ladder: "
        + ", ".join(f"{rung} {count:,.0f}" for rung, count in rungs.items())
    )
    console.print(f"model: {model_label(text)}")
    console.print(f"fraud labels applied to the feature store by the label worker: {labels:,.0f}")
    console.print(
        f"replay: {replay_out.strip().splitlines()[-1] if replay_out.strip() else 'done'}"
    )
    console.print(f"backtest report: {report / 'report.md'} (its quality per rung, too)")
    console.print("Kafka and Redis are still running for you; `make down` stops them.")
    shown = ",".join(f"{rung}:{count:.0f}" for rung, count in rungs.items())
    print(
        f"DEMO SUMMARY decisions={decided:.0f} transactions={expected} rungs={shown} "
        f"labels={labels:.0f} report={report}"
    )


def rung_counts(text: str, decided: float) -> dict[str, float]:
    """Decisions per rung, from serve's counters (the full path is what no rung took)."""
    lower = {
        rung: sample(text, "fraudstream_degraded_total", rung=rung)
        for rung in ("truncated_model", "partial_features", "rules")
    }
    return {"full": decided - sum(lower.values()), **lower}


def live_view(port: int, expected: int, replay: subprocess.Popen[bytes]) -> str:
    text, last, last_t = "", 0.0, time.monotonic()
    rate = 0.0
    deadline = time.monotonic() + 600
    with Live(console=console, refresh_per_second=4, transient=False) as live:
        while time.monotonic() < deadline:
            text = metrics_text(port) or text
            done = sum(
                sample(text, "fraudstream_decisions_total", decision=d)
                for d in ("approve", "review", "decline")
            )
            now = time.monotonic()
            if now - last_t >= 1.0:
                rate, last, last_t = (done - last) / (now - last_t), done, now
            state = "running" if replay.poll() is None else f"done (exit {replay.returncode})"
            live.update(view(text, rate, state))
            if replay.poll() is not None and done >= expected:
                break
            if replay.poll() not in (None, 0):
                break
            time.sleep(0.25)
    return text


def count_rows(path: Path, first_day: str, last_day: str) -> int:
    import pandas as pd

    from fraudstream.features.datafile import read_transactions

    df = read_transactions(path)
    lo = pd.Timestamp(first_day, tz="UTC").value // 1_000_000
    hi = pd.Timestamp(last_day, tz="UTC").value // 1_000_000
    return int(((df["event_time_ms"] >= lo) & (df["event_time_ms"] < hi)).sum())


def wait_ready(port: int, demo: Demo, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for proc in demo.procs:
            if proc.poll() is not None:
                msg = f"a service exited early (code {proc.returncode}); see {demo.out}/*.log"
                raise SystemExit(msg)
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1):  # noqa: S310
                console.print("serve is ready (partitions assigned, model loaded)")
                return
        except OSError:
            time.sleep(0.2)
    msg = "serve did not become ready in time; see its log"
    raise SystemExit(msg)


def create_topics(bootstrap: str, names: list[str], partitions: int = 6) -> None:
    sys.path.insert(0, str(ROOT / "ops"))
    from topics import create_topics as create

    create(bootstrap, partitions, tuple(names))
    compress_topics(bootstrap, names)


def compress_topics(bootstrap: str, names: list[str], codec: str = "lz4") -> None:
    """Have the broker store every batch of these topics compressed with ``codec``: the
    paced replay produces uncompressed, and serve and the label worker must meet compressed
    input as they do from replay --speed max and from many a production producer."""
    from confluent_kafka.admin import (
        AdminClient,
        AlterConfigOpType,
        ConfigEntry,
        ConfigResource,
        ResourceType,
    )

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    entry = ConfigEntry("compression.type", codec, incremental_operation=AlterConfigOpType.SET)
    resources = [
        ConfigResource(ResourceType.TOPIC, name, incremental_configs=[entry]) for name in names
    ]
    for future in admin.incremental_alter_configs(resources).values():
        future.result(timeout=30)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--out", type=Path, default=ROOT / "var/demo")
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--days", type=int, default=42)
    parser.add_argument("--replay-days", type=int, default=21)
    parser.add_argument("--tiny", action="store_true", help="a small, fast run (for the tests)")
    args = parser.parse_args()
    if args.tiny:
        args.customers, args.days, args.replay_days = 200, 42, 21
    demo = Demo(
        args.bootstrap, args.redis_url, args.out, args.customers, args.days, args.replay_days
    )
    try:
        return run(demo)
    except KeyboardInterrupt:
        console.print("interrupted: stopping everything the demo started")
        return 130
    finally:
        demo.stop_all()


if __name__ == "__main__":
    sys.exit(main())
