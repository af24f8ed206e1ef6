"""Synthetic card transactions with fraud, after the generator of the handbook
"Reproducible Machine Learning for Credit Card Fraud Detection" (Le Borgne et al.).

Vectorised and deterministic for a seed. Customers and terminals sit on a 100 x 100 square;
a customer pays only at terminals within ``radius``; three fraud scenarios are injected:
(1) amounts over 220, (2) compromised terminals, (3) compromised customers whose amounts
are multiplied by five.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from fraudstream.features.definitions import DAY_S, MS_PER_S, FloatArray, IntArray
from fraudstream.features.exceptions import ConfigError

logger = logging.getLogger(__name__)

Progress = Callable[[str, float], None]
"""Called with a step name and the fraction of the work done (0..1)."""

_SIDE = 100.0
_TIME_OF_DAY_MEAN_S = DAY_S / 2
_TIME_OF_DAY_STD_S = 20_000.0
_CHUNK = 256


@dataclass(frozen=True)
class SimulatorConfig:
    """Size, period, seed and fraud parameters of a simulated dataset."""

    n_customers: int = 5_000
    """Number of customers."""
    n_terminals: int = 10_000
    """Number of terminals."""
    n_days: int = 183
    """Number of simulated days."""
    start_date: str = "2018-04-01"
    """First day (UTC), ISO date."""
    seed: int = 0
    """Seed of the one random generator every draw comes from."""
    radius: float = 5.0
    """A customer uses the terminals strictly closer than this."""
    fraud_amount_threshold: float = 220.0
    """Scenario 1: every amount above this is fraud."""
    compromised_terminals_per_day: int = 2
    """Scenario 2: terminals compromised each day ..."""
    terminal_compromise_days: int = 28
    """... for this many days (the day itself included)."""
    compromised_customers_per_day: int = 3
    """Scenario 3: customers compromised each day ..."""
    customer_compromise_days: int = 14
    """... for this many days; a third of their transactions become fraud, amount x 5."""

    def __post_init__(self) -> None:
        for name in ("n_customers", "n_terminals", "n_days"):
            if getattr(self, name) < 1:
                msg = f"{name} must be at least 1, got {getattr(self, name)}"
                raise ConfigError(msg)
        if self.compromised_terminals_per_day > self.n_terminals:
            msg = "compromised_terminals_per_day cannot exceed n_terminals"
            raise ConfigError(msg)
        if self.compromised_customers_per_day > self.n_customers:
            msg = "compromised_customers_per_day cannot exceed n_customers"
            raise ConfigError(msg)
        self.start_ms  # noqa: B018 - validates the date early

    @property
    def start_ms(self) -> int:
        try:
            day = datetime.fromisoformat(self.start_date).replace(tzinfo=UTC)
        except ValueError as exc:
            msg = f"start_date {self.start_date!r} is not an ISO date such as 2018-04-01"
            raise ConfigError(msg) from exc
        return int(day.timestamp()) * MS_PER_S


@dataclass(frozen=True)
class Summary:
    """What ``simulate`` prints: size and fraud rate per scenario."""

    n_transactions: int
    """Rows generated."""
    n_frauds: int
    """Rows with ``is_fraud`` = 1."""
    fraud_rate_by_scenario: dict[int, float] = field(default_factory=dict)
    """Scenario (1..3) -> share of all transactions labelled by it."""

    @property
    def fraud_rate(self) -> float:
        return self.n_frauds / self.n_transactions if self.n_transactions else 0.0


@dataclass(frozen=True)
class _World:
    mean_amount: FloatArray
    mean_per_day: FloatArray
    offsets: IntArray  # customer c uses terminals[offsets[c]:offsets[c + 1]]
    terminals: IntArray


def simulate(
    config: SimulatorConfig | None = None, progress: Progress | None = None
) -> pd.DataFrame:
    """The dataset: canonical columns plus ``is_fraud`` and ``fraud_scenario``, by event time."""
    config = config or SimulatorConfig()
    report = progress or (lambda _step, _done: None)
    rng = np.random.default_rng(config.seed)
    world = _make_world(config, rng, report)
    report("transactions", 0.4)
    cust, sec, amount, terminal = _make_transactions(config, world, rng)
    report("frauds", 0.7)
    fraud, scenario = _inject_frauds(config, rng, cust, sec, amount, terminal)
    report("table", 0.9)
    df = _to_frame(config, cust, sec, amount, terminal, fraud, scenario)
    report("done", 1.0)
    return df


def summarize(df: pd.DataFrame) -> Summary:
    """Transaction count, fraud count and the fraud rate of each scenario."""
    n = len(df)
    scenario = df["fraud_scenario"].to_numpy()
    rates = {k: float(np.count_nonzero(scenario == k)) / n if n else 0.0 for k in (1, 2, 3)}
    return Summary(n, int(df["is_fraud"].sum()), rates)


def _make_world(config: SimulatorConfig, rng: np.random.Generator, report: Progress) -> _World:
    cxy = rng.uniform(0.0, _SIDE, size=(config.n_customers, 2))
    mean_amount = rng.uniform(5.0, 100.0, size=config.n_customers)
    mean_per_day = rng.uniform(0.0, 4.0, size=config.n_customers)
    txy = rng.uniform(0.0, _SIDE, size=(config.n_terminals, 2))
    counts = np.zeros(config.n_customers, dtype=np.int64)
    chunks: list[IntArray] = []
    for start in range(0, config.n_customers, _CHUNK):
        block = cxy[start : start + _CHUNK]
        d2 = ((block[:, None, :] - txy[None, :, :]) ** 2).sum(axis=2)
        rows, cols = np.nonzero(d2 < config.radius**2)
        counts[start : start + len(block)] = np.bincount(rows, minlength=len(block))
        chunks.append(cols.astype(np.int64))
        report("terminals", 0.4 * min(1.0, (start + _CHUNK) / config.n_customers))
    offsets = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
    return _World(mean_amount, mean_per_day, offsets, np.concatenate(chunks))


def _make_transactions(
    config: SimulatorConfig, world: _World, rng: np.random.Generator
) -> tuple[IntArray, IntArray, FloatArray, IntArray]:
    """Customer, second since start, amount and terminal of every transaction, by time."""
    n_avail = np.diff(world.offsets)
    per_day = rng.poisson(world.mean_per_day[:, None], size=(config.n_customers, config.n_days))
    per_day[n_avail == 0] = 0  # a customer with no terminal in reach makes no transaction
    cell = np.repeat(np.arange(per_day.size, dtype=np.int64), per_day.ravel())
    cust, day = np.divmod(cell, config.n_days)
    time_of_day = np.trunc(rng.normal(_TIME_OF_DAY_MEAN_S, _TIME_OF_DAY_STD_S, size=len(cell)))
    mean = world.mean_amount[cust]
    draw = rng.normal(mean, mean / 2.0)
    redraw = rng.uniform(0.0, 2.0 * mean)
    amount = np.round(np.where(draw < 0, redraw, draw), 2).astype(np.float64)
    pick = np.floor(rng.random(len(cell)) * n_avail[cust]).astype(np.int64)
    terminal = world.terminals[world.offsets[cust] + pick]
    keep = (time_of_day > 0) & (time_of_day < DAY_S)
    sec = day[keep] * DAY_S + time_of_day[keep].astype(np.int64)
    order = np.argsort(sec, kind="stable")
    return cust[keep][order], sec[order], amount[keep][order], terminal[keep][order]


def _inject_frauds(
    config: SimulatorConfig,
    rng: np.random.Generator,
    cust: IntArray,
    sec: IntArray,
    amount: FloatArray,
    terminal: IntArray,
) -> tuple[IntArray, IntArray]:
    """Scenarios 1, 2, 3 in that order (a later one relabels); scenario 3 edits ``amount``."""
    day = sec // DAY_S
    scenario = np.zeros(len(sec), dtype=np.int64)
    scenario[amount > config.fraud_amount_threshold] = 1
    scenario[_compromised_terminal_rows(config, rng, terminal, day)] = 2
    for rows in _compromised_customer_rows(config, rng, cust, day):
        amount[rows] *= 5.0
        scenario[rows] = 3
    return (scenario > 0).astype(np.int64), scenario


def _compromised_terminal_rows(
    config: SimulatorConfig, rng: np.random.Generator, terminal: IntArray, day: IntArray
) -> IntArray:
    n_days, span = config.n_days, config.terminal_compromise_days
    compromised = np.zeros((config.n_terminals, n_days + span + 1), dtype=np.int64)
    for d in range(n_days):
        hit = rng.choice(config.n_terminals, config.compromised_terminals_per_day, replace=False)
        compromised[hit, d] += 1
        compromised[hit, d + span] -= 1
    active = np.cumsum(compromised, axis=1) > 0
    return np.flatnonzero(active[terminal, day])


def _compromised_customer_rows(
    config: SimulatorConfig, rng: np.random.Generator, cust: IntArray, day: IntArray
) -> list[IntArray]:
    """Per day, the third of the compromised customers' transactions that become fraud."""
    key = cust * (config.n_days + config.customer_compromise_days) + day
    by_key = np.argsort(key, kind="stable")
    sorted_key = key[by_key]
    stride = config.n_days + config.customer_compromise_days
    picks: list[IntArray] = []
    for d in range(config.n_days):
        hit = rng.choice(config.n_customers, config.compromised_customers_per_day, replace=False)
        lo = np.searchsorted(sorted_key, np.sort(hit) * stride + d, side="left")
        hi = np.searchsorted(
            sorted_key, np.sort(hit) * stride + d + config.customer_compromise_days
        )
        rows = np.concatenate([by_key[a:b] for a, b in zip(lo, hi, strict=True)])
        rows.sort()
        picks.append(rng.choice(rows, len(rows) // 3, replace=False))
    return picks


def _to_frame(
    config: SimulatorConfig,
    cust: IntArray,
    sec: IntArray,
    amount: FloatArray,
    terminal: IntArray,
    fraud: IntArray,
    scenario: IntArray,
) -> pd.DataFrame:
    customer_names = np.array([str(i) for i in range(config.n_customers)], dtype=object)
    terminal_names = np.array([str(i) for i in range(config.n_terminals)], dtype=object)
    return pd.DataFrame(
        {
            "transaction_id": pd.array(np.arange(len(sec)).astype(str), dtype="str"),
            "event_time_ms": config.start_ms + sec * MS_PER_S,
            "customer_id": pd.array(customer_names[cust], dtype="str"),
            "terminal_id": pd.array(terminal_names[terminal], dtype="str"),
            "amount": amount.astype(np.float64),
            "is_fraud": fraud.astype(np.int8),
            "fraud_scenario": scenario.astype(np.int8),
        }
    )
