"""The --via-kafka logic without a broker: a stand-in serve (the same Pipeline over its own
in-memory store, fed only what LiveBacktest primes and publishes) and the comparison."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pytest

from fraudstream.features.exceptions import ConfigError
from fraudstream.features.memory_store import MemoryStore
from fraudstream.models import protocol
from fraudstream.models.registry import Registry
from fraudstream.models.scorer import Scorer
from fraudstream.stream.history.backtest import (
    Backtest,
    BacktestResult,
    LiveBacktest,
    Window,
    compare,
)
from fraudstream.stream.pipeline import Pipeline
from fraudstream.stream.planner import Planner
from tests.serving import batch_of

START = protocol.day_start_ms("2018-04-15")


@dataclass
class StandInServe:
    """Scores what is published, in order, through the pipeline over its own store."""

    scorer: Scorer
    store: MemoryStore = field(default_factory=MemoryStore)
    decided: dict[str, Any] = field(default_factory=dict)
    events: list[str] = field(default_factory=list)

    def publish(self, frame: pd.DataFrame) -> int:
        self.events.append(f"publish {len(frame)}")
        pipeline = Pipeline(store=self.store, model=lambda: self.scorer, planner=Planner(64))
        for lo in range(0, len(frame), 64):
            part = frame.iloc[lo : lo + 64]
            scored = pipeline.run(batch_of(part), pipeline.planner.plan(None, len(part), True))
            for d in scored.decisions(None, None, 0):
                self.decided[d.transaction_id] = d.to_dict()
        return len(frame)

    def collect(self, want: set[str], timeout_s: float) -> tuple[dict[str, Any], int]:
        return {t: self.decided[t] for t in want if t in self.decided}, 0


@dataclass
class RecordingStore:
    """Serve's store as the backtest sees it: priming goes to the stand-in's store."""

    serve: StandInServe

    def close(self) -> None:
        pass

    def apply_labels(self, labels: Any) -> int:
        self.serve.events.append(f"labels {len(labels)}")
        return self.serve.store.apply_labels(labels)

    def apply(self, batch: Any, timeout_s: float | None = None, **kw: Any) -> Any:
        return self.serve.store.apply(batch, timeout_s)


@pytest.fixture
def reference(history: pd.DataFrame, registry: Registry) -> tuple[BacktestResult, Scorer]:
    scorer = Scorer.load(registry, device="cpu")
    window = Window(START, test_days=6, delay_days=3)
    return Backtest(MemoryStore(), scorer).run(history, window), scorer


def test_stand_in_serve_fed_in_phases_scores_like_the_backtest(
    history: pd.DataFrame, reference: tuple[BacktestResult, Scorer]
) -> None:
    result, scorer = reference
    serve = StandInServe(scorer)
    live = LiveBacktest(RecordingStore(serve), serve.publish, serve).run(history, result)
    window = result.scored.rows.size
    assert live.sent == live.received == live.compared == window
    assert live.mismatched == 0 and live.max_abs_diff == 0.0
    assert live.degraded == {"full": window}
    assert live.metrics == result.champion.metrics
    # two phases of three days, the second one's labels fed between them
    publishes = [e for e in serve.events if e.startswith("publish")]
    assert len(publishes) == 2
    second = serve.events.index(publishes[1])
    assert serve.events[second - 1].startswith("labels ")
    assert int(serve.events[second - 1].split()[1]) > 0


def test_a_label_delay_above_the_feature_delay_is_refused(
    history: pd.DataFrame, reference: tuple[BacktestResult, Scorer]
) -> None:
    result, scorer = reference
    late = BacktestResult(**{**result.__dict__, "window": Window(START, 6, delay_days=8)})
    serve = StandInServe(scorer)
    with pytest.raises(ConfigError, match="--delay-days <= 7"):
        LiveBacktest(RecordingStore(serve), serve.publish, serve).run(history, late)


def test_compare_counts_mismatches_only_on_the_full_path(
    history: pd.DataFrame, reference: tuple[BacktestResult, Scorer]
) -> None:
    result, _scorer = reference
    ids = history["transaction_id"].to_numpy()[result.scored.rows].astype(str)
    scores = result.scored.scores
    got = {
        t: {"score": float(s), "degraded": None, "deadline_met": True, "latency_ms": {"total": 5.0}}
        for t, s in zip(ids, scores, strict=True)
    }
    got[ids[0]] = got[ids[0]] | {"score": float(scores[0]) + 0.25}  # a real mismatch
    got[ids[1]] = got[ids[1]] | {"score": 0.5, "degraded": "partial_features"}  # not compared
    got[ids[2]] = got[ids[2]] | {"deadline_met": False, "latency_ms": {"total": 80.0, "score": 1.0}}
    del got[ids[3]]  # never came back
    live = compare(history, result, got, sent=len(ids), duplicates=2)
    assert live.received == len(ids) - 1 and np.isnan(live.scores[3])
    assert live.compared == len(ids) - 2 and live.mismatched == 1
    assert live.max_abs_diff == pytest.approx(0.25)
    assert live.degraded == {"full": len(ids) - 2, "partial_features": 1}
    assert live.deadline_missed == 1 and live.duplicates == 2
    assert live.latency_ms.size == len(ids) - 1 and live.latency_ms.max() == 80.0
    assert live.stage_ms == {"score": 1.0}
    assert live.metrics == {}  # a decision is missing: no live metrics
