"""serve's scoring path end to end on CUDA against the CPU: the same transactions, fraud
labels and ladder rungs through ``fraudstream.stream.pipeline.Pipeline`` (features from the store,
the
model, decisions, reasons), once with each scorer.

The device machine has no Kafka broker (no Java) and no redis-server, so this is serve
without its Kafka consumer and producer, with the in-process store that has the Redis
store's semantics (``fraudstream.features.memory_store``; the integration suite checks they agree).
What the GPU changes is the scorer, which this drives exactly as serve's loop does.
"""

from __future__ import annotations

import pickle
from itertools import cycle

import numpy as np
import pandas as pd
import pytest

from fraudstream.features.memory_store import MemoryStore
from fraudstream.features.replay import fraud_labels
from fraudstream.features.simulator import SimulatorConfig, simulate
from fraudstream.models import protocol
from fraudstream.models.scorer import Scorer
from fraudstream.stream.history.backtest import Window, batch_of, id_columns, steps
from fraudstream.stream.pipeline import Pipeline, ScoredBatch
from fraudstream.stream.planner import RUNG_PARTIAL, RUNG_TRUNCATED, Plan, Planner
from tests.gpu.test_gpu_scorer import SCORE_TOLERANCE, same_reasons

pytestmark = pytest.mark.gpu

SERVED = SimulatorConfig(n_customers=400, n_terminals=2000, n_days=45, seed=2)
"""Other customers and terminals than the model's training world, 45 days: 37 of history
(the longest feature window reaches 37 days back), then the test week."""
TEST_START = "2018-05-08"
BATCH = 1024
PLANS = (
    Plan(BATCH, None, 1.0),
    Plan(BATCH, None, 1.0),
    Plan(BATCH, RUNG_TRUNCATED, 1.0),
    Plan(BATCH, RUNG_PARTIAL, 0.0),
)
"""The rungs in turn: full, full, truncated model, partial features (the store skipped)."""


def serve_both(
    world: pd.DataFrame, cpu: Scorer, cuda: Scorer
) -> list[tuple[ScoredBatch, ScoredBatch]]:
    """Replay the world up to the test week into a store, then score each test batch through
    one pipeline per scorer, each with its own copy of that store, with the same plan."""
    table = world.sort_values("event_time_ms", kind="stable").reset_index(drop=True)
    window = Window(protocol.day_start_ms(TEST_START))
    history = MemoryStore()
    history_start = window.history_start_ms(history.config)
    feed = fraud_labels(table[table["event_time_ms"] >= history_start], window.delay_days)
    columns = id_columns(table)
    plans = cycle(PLANS)
    pipelines: list[Pipeline] = []
    pairs = []
    for step in steps(table, feed, window, history_start, BATCH):
        labels = feed.labels[step.labels]
        batch = batch_of(table, step.rows, columns)
        if not step.in_test:
            if labels:
                history.apply_labels(labels)
            history.apply(batch, timeout_s=None)
            continue
        if not pipelines:  # the test week starts: the history, and a copy, one per scorer
            twin = pickle.loads(pickle.dumps(history))  # noqa: S301 - our own object
            pipelines = [
                Pipeline(store=store, model=lambda s=scorer: s, planner=Planner(BATCH))
                for store, scorer in ((history, cpu), (twin, cuda))
            ]
        if labels:
            for pipeline in pipelines:
                pipeline.store.apply_labels(labels)
        plan = next(plans)
        pairs.append((pipelines[0].run(batch, plan), pipelines[1].run(batch, plan)))
    return pairs


def test_serve_on_cuda_decides_as_on_cpu(cpu_scorer: Scorer, cuda_scorer: Scorer) -> None:
    world = simulate(SERVED)
    pairs = serve_both(world, cpu_scorer, cuda_scorer)
    times = world["event_time_ms"].to_numpy()
    start = protocol.day_start_ms(TEST_START)
    in_test = int(np.count_nonzero((times >= start) & (times < start + 7 * protocol.DAY_MS)))
    assert sum(len(cpu.batch) for cpu, _ in pairs) == in_test
    rungs = {cpu.rung for cpu, _ in pairs}
    assert {None, RUNG_PARTIAL} <= rungs, rungs
    alerted = 0
    for i, (cpu, cuda) in enumerate(pairs):
        assert cuda.batch.transaction_id == cpu.batch.transaction_id
        assert (cuda.rung, cuda.model_version) == (cpu.rung, cpu.model_version), i
        np.testing.assert_array_equal(cuda.features, cpu.features)
        assert float(np.max(np.abs(cuda.scores - cpu.scores))) <= SCORE_TOLERANCE, i
        np.testing.assert_array_equal(cuda.codes, cpu.codes)
        assert cuda.reasons.keys() == cpu.reasons.keys(), i
        for row, want in cpu.reasons.items():
            got = cuda.reasons[row]
            pairs_of = [(r["feature"], r["contribution"]) for r in got]
            assert same_reasons(pairs_of, [(r["feature"], r["contribution"]) for r in want])
        alerted += len(cpu.reasons)
    assert alerted >= 50, "too few reviews and declines to compare reasons"
