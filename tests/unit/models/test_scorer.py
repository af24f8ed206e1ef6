from __future__ import annotations

import contextlib
import hashlib
import threading
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import xgboost as xgb

from fraudstream.features.definitions import FeatureConfig
from fraudstream.models import scorer as scorer_module
from fraudstream.models.exceptions import ModelCorrupt, ModelNotFound, ModelSchemaMismatch
from fraudstream.models.manifest import RUNG_PARTIAL, RUNG_TRUNCATED, Thresholds
from fraudstream.models.registry import Registry
from fraudstream.models.scorer import Scorer
from fraudstream.models.threads import ThreadPolicy
from tests.unit.models.conftest import NAMES, SCHEMA, TREES, register, synthetic


def open_scorer(registry: Registry, version: str | None = None, **kw: Any) -> Scorer:
    return Scorer.open(registry, version, "cpu", NAMES, SCHEMA, calibrate=False, **kw)


def test_scores_match_the_booster_and_truncation_uses_first_trees(
    registry: Registry, version: str, booster: xgb.Booster
) -> None:
    scorer = open_scorer(registry, version)
    x, _ = synthetic(300, seed=2)
    x[::7, 3] = np.nan
    full = scorer.score(x)
    assert full.dtype == np.float64
    np.testing.assert_allclose(full, booster.inplace_predict(x), rtol=1e-6)
    truncated = scorer.score(x, trees=5)
    np.testing.assert_allclose(
        truncated, booster.inplace_predict(x, iteration_range=(0, 5)), rtol=1e-6
    )
    assert not np.allclose(full, truncated)
    np.testing.assert_array_equal(scorer.score(x.astype(np.float64)), full)
    assert scorer.score(np.empty((0, len(NAMES)), dtype=np.float32)).shape == (0,)


def test_attributes_come_from_the_manifest(registry: Registry, booster: xgb.Booster) -> None:
    plain = open_scorer(registry, register(registry, booster))
    assert (plain.version, plain.device, plain.num_trees) == ("v0001", "cpu", TREES)
    assert plain.truncation_trees is None  # no thresholds for it: the truncated rung is off
    assert plain.rung_quality() == {RUNG_TRUNCATED: None, RUNG_PARTIAL: None}
    assert plain.feature_names == NAMES
    assert plain.thresholds.review == 0.3
    own = Thresholds(review=0.4, decline=0.9)
    default = open_scorer(registry, register(registry, booster, truncated_thresholds=own))
    assert default.truncation_trees == 5  # 25% of 20 when not measured
    measured = open_scorer(
        registry, register(registry, booster, truncation_trees=9, truncated_thresholds=own)
    )
    assert measured.truncation_trees == 9


def test_each_rung_decides_with_its_own_thresholds(
    registry: Registry, booster: xgb.Booster
) -> None:
    version = register(
        registry,
        booster,
        truncated_thresholds=Thresholds(review=0.5, decline=0.6),
        partial_thresholds=Thresholds(review=0.1, decline=0.2),
        metrics={
            "validation_average_precision": 0.8,
            "validation_average_precision_truncated_model": 0.72,
            "validation_average_precision_partial_features": 0.1,
        },
    )
    scorer = open_scorer(registry, version)
    scores = np.array([0.15, 0.35, 0.55, 0.65, 0.85])
    assert scorer.decide(scores).tolist() == [0, 1, 1, 1, 2]  # review 0.3, decline 0.8
    assert scorer.decide(scores, RUNG_TRUNCATED).tolist() == [0, 0, 1, 2, 2]
    assert scorer.decide(scores, RUNG_PARTIAL).tolist() == [1, 2, 2, 2, 2]
    quality = scorer.rung_quality()
    assert quality[RUNG_TRUNCATED] == pytest.approx(0.9)
    assert quality[RUNG_PARTIAL] == pytest.approx(0.125)


def test_truncated_reasons_explain_the_truncated_score(
    registry: Registry, version: str, booster: xgb.Booster
) -> None:
    scorer = open_scorer(registry, version)
    x, _ = synthetic(20, seed=4)
    got = scorer.reasons(x, k=15, trees=5)
    matrix = xgb.DMatrix(x, feature_names=list(NAMES))
    want = booster.predict(matrix, pred_contribs=True, iteration_range=(0, 5))[:, :-1]
    for row, reasons in zip(want, got, strict=True):
        for name, value in reasons:
            assert value == pytest.approx(float(row[NAMES.index(name)]), rel=1e-4, abs=1e-6)
    full = scorer.reasons(x, k=15)
    assert got != full


def test_none_loads_current(registry: Registry, booster: xgb.Booster) -> None:
    first = register(registry, booster)
    with pytest.raises(ModelNotFound, match="has no CURRENT model; run fraudstream models"):
        open_scorer(registry)
    register(registry, booster)
    registry.promote(first)
    assert open_scorer(registry).version == first


def test_bad_batches_and_tree_counts_are_refused(registry: Registry, version: str) -> None:
    scorer = open_scorer(registry, version)
    n = len(NAMES)
    with pytest.raises(ValueError, match=rf"batch must have shape \(rows, {n}\), got \(3, 14\)"):
        scorer.score(np.zeros((3, 14), dtype=np.float32))
    with pytest.raises(ValueError, match="trees must be within 1..20"):
        scorer.score(np.zeros((3, len(NAMES)), dtype=np.float32), trees=21)


def test_reasons_are_the_top_positive_contributions(
    registry: Registry, version: str, booster: xgb.Booster
) -> None:
    scorer = open_scorer(registry, version)
    x, _ = synthetic(40, seed=3)
    reasons = scorer.reasons(x, k=3)
    contribs = booster.predict(xgb.DMatrix(x, feature_names=list(NAMES)), pred_contribs=True)
    assert len(reasons) == 40
    for row, got in zip(contribs[:, :-1], reasons, strict=True):
        expected = sorted(
            ((NAMES[j], float(v)) for j, v in enumerate(row) if v > 0), key=lambda p: -p[1]
        )[:3]
        assert [name for name, _ in got] == [name for name, _ in expected]
        np.testing.assert_allclose([v for _, v in got], [v for _, v in expected], rtol=1e-5)
    assert scorer.reasons(x[:0]) == []


def test_decide_maps_scores_to_codes(registry: Registry, version: str) -> None:
    scorer = open_scorer(registry, version)  # review 0.3, decline 0.8
    codes = scorer.decide(np.array([0.0, 0.29, 0.3, 0.79, 0.8, 1.0]))
    assert codes.tolist() == [0, 0, 1, 1, 2, 2]
    assert [Scorer.DECISIONS[c] for c in codes] == ["approve"] * 2 + ["review"] * 2 + [
        "decline"
    ] * 2


def test_schema_hash_mismatch_is_refused(registry: Registry, version: str) -> None:
    with pytest.raises(ModelSchemaMismatch, match="feature schema hash is schema-hash-, the run"):
        Scorer.open(registry, version, "cpu", NAMES, "other-hash", calibrate=False)


def test_feature_name_mismatch_is_refused(registry: Registry, version: str) -> None:
    names = (*NAMES[:-1], "terminal_risk_90d")
    with pytest.raises(
        ModelSchemaMismatch,
        match=r"features differ from the running ones: adds terminal_risk_90d; lacks "
        r"terminal_last_fraud_age_s_30d; retrain it with fraudstream train$",
    ):
        Scorer.open(registry, version, "cpu", names, SCHEMA, calibrate=False)


SET_3 = (*NAMES[:18], "customer_amount_z_30d", "customer_max_amount_30d",
         "terminal_first_fraud_age_s_30d", "terminal_last_fraud_age_s_30d")  # fmt: skip


@pytest.mark.parametrize(
    ("old_set", "names", "message"),
    [
        # the handbook's 15
        (1, NAMES[:15],
         r"^model v0001 cannot be served by this build: it was trained on feature set 1 "
         r"\(15 features\), this build computes feature set 4 \(21 features: adds "
         r"customer_amount_ratio_1d, customer_amount_ratio_7d, customer_amount_ratio_30d, "
         r"customer_max_amount_30d, terminal_first_fraud_age_s_30d, "
         r"terminal_last_fraud_age_s_30d\); retrain it with fraudstream train$"),
        # its 18 features are the first 18 of set 4, but its trees were fit without the
        # others: this build serves set 4 models only
        (2, NAMES[:18],
         r"trained on feature set 2 \(18 features\), this build computes feature set 4 "
         r"\(21 features: adds customer_max_amount_30d, terminal_first_fraud_age_s_30d, "
         r"terminal_last_fraud_age_s_30d\)"),
        (3, SET_3,
         r"trained on feature set 3 \(22 features\), this build computes feature set 4 "
         r"\(21 features: lacks customer_amount_z_30d\); retrain it with fraudstream train$"),
    ],
)  # fmt: skip
def test_a_model_of_another_feature_set_is_refused_at_load_naming_the_sets(
    registry: Registry, booster: xgb.Booster, old_set: int, names: tuple[str, ...], message: str
) -> None:
    old = FeatureConfig().describe() | {"feature_set_version": old_set}
    version = register(registry, booster, feature_names=names, features=old)
    with pytest.raises(ModelSchemaMismatch, match=message):
        Scorer.load(registry, version, "cpu")


def test_a_model_of_other_windows_is_refused_at_load_naming_the_setting(
    registry: Registry, booster: xgb.Booster
) -> None:
    other = FeatureConfig(delay_days=6)
    version = register(
        registry, booster, schema_hash=other.schema_hash(), features=other.describe()
    )
    with pytest.raises(ModelSchemaMismatch, match=r"\(delay_days 6 in the model, 7 running\)"):
        Scorer.load(registry, version, "cpu")
    assert Scorer.load(registry, version, "cpu", config=other).version == version


def forge(registry: Registry, version: str, payload: bytes) -> None:
    """Replace the model file and make the manifest's checksum agree with it."""
    old = registry.manifest(version).sha256
    registry.model_path(version).write_bytes(payload)
    path = registry.root / version / "manifest.json"
    path.write_text(path.read_text().replace(old, hashlib.sha256(payload).hexdigest()))


def test_corrupt_files_are_refused_with_clear_messages(registry: Registry, version: str) -> None:
    path = registry.model_path(version)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ModelCorrupt, match="fails its checksum"):
        open_scorer(registry, version)
    forge(registry, version, b"{garbage that looks like ubjson")
    with pytest.raises(ModelCorrupt, match="model v0001 cannot be read as an XGBoost model"):
        open_scorer(registry, version)
    forge(registry, version, b"\x80\x04\x95 a pickle")
    with pytest.raises(ModelCorrupt, match="is a Python pickle, which is refused"):
        open_scorer(registry, version)


def test_manifest_disagreeing_with_the_model_is_corrupt(registry: Registry, version: str) -> None:
    path = registry.root / version / "manifest.json"
    path.write_text(path.read_text().replace('"num_trees": 20', '"num_trees": 21'))
    with pytest.raises(ModelCorrupt, match="has 20 trees but its manifest says 21"):
        open_scorer(registry, version)


def test_concurrent_scoring_matches_serial_scoring(registry: Registry, version: str) -> None:
    scorer = open_scorer(registry, version)
    assert scorer.thread_policy.multi_from_rows == 1024
    batches = [synthetic(rows, seed=rows)[0] for rows in (1, 64, 1024, 3000)]
    expected = [(scorer.score(b), scorer.score(b, trees=7)) for b in batches]
    failures: list[str] = []
    barrier = threading.Barrier(8)

    def work(worker: int) -> None:
        barrier.wait()
        for i in range(40):
            index = (worker + i) % len(batches)
            full, short = scorer.score(batches[index]), scorer.score(batches[index], trees=7)
            timing = scorer.last_timing
            if timing is None or timing.rows != batches[index].shape[0] or timing.trees != 7:
                failures.append(f"worker {worker} saw timing {timing}")
            if not (
                np.array_equal(full, expected[index][0])
                and np.array_equal(short, expected[index][1])
            ):
                failures.append(f"worker {worker} got different scores for batch {index}")
            if i % 10 == 0:
                scorer.reasons(batches[index][:5])

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_timing_records_threads_per_batch_size(registry: Registry, version: str) -> None:
    loaded = open_scorer(registry, version)
    cores = loaded.thread_policy.cores
    scorer = loaded.with_policy(ThreadPolicy(cores=cores, multi_from_rows=64))
    small = scorer.score_timed(np.zeros((63, len(NAMES)), dtype=np.float32))[1]
    large = scorer.score_timed(np.zeros((64, len(NAMES)), dtype=np.float32))[1]
    assert (small.threads, large.threads) == (1, cores)
    with pytest.raises(ValueError, match="policy.cores must be"):
        loaded.with_policy(ThreadPolicy(cores=cores + 1, multi_from_rows=1))
    assert small.device == "cpu" and small.trees == TREES
    assert 0 <= small.predict_s <= small.total_s


def test_threads_cap_the_cores_a_batch_may_use(registry: Registry, version: str) -> None:
    one = open_scorer(registry, version, threads=1)
    assert one.thread_policy.cores == 1
    assert one.score_timed(np.zeros((4096, len(NAMES)), dtype=np.float32))[1].threads == 1
    every = open_scorer(registry, version)
    assert open_scorer(registry, version, threads=10_000).thread_policy.cores == (
        every.thread_policy.cores
    )
    with pytest.raises(ValueError, match="threads must be a whole number >= 1, got 0"):
        open_scorer(registry, version, threads=0)


class FakeDeviceArray:
    def __init__(self, host: np.ndarray) -> None:
        self.host = host


class FakeCudaBooster:
    """Stands in for a booster on a GPU: accepts only device arrays."""

    def __init__(self) -> None:
        self.params: dict[str, Any] = {}
        self.inputs: list[type] = []

    def set_param(self, params: dict[str, Any]) -> None:
        self.params.update(params)

    def num_boosted_rounds(self) -> int:
        return TREES

    def num_features(self) -> int:
        return len(NAMES)

    def inplace_predict(self, data: Any, iteration_range: tuple[int, int], **_: Any) -> Any:
        self.inputs.append(type(data))
        assert isinstance(data, FakeDeviceArray), "a NumPy array reached the GPU booster"
        return FakeDeviceArray(np.full(data.host.shape[0], 0.5, dtype=np.float32))


def test_cuda_hands_xgboost_a_device_array(
    registry: Registry, version: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_booster = FakeCudaBooster()
    fake_cupy = SimpleNamespace(
        asarray=FakeDeviceArray,
        asnumpy=lambda a: a.host,
        cuda=SimpleNamespace(Device=lambda _n: contextlib.nullcontext()),
    )
    monkeypatch.setattr(scorer_module, "resolve_device", lambda *_a, **_k: "cuda")
    monkeypatch.setattr(scorer_module, "import_cupy", lambda: fake_cupy)
    monkeypatch.setattr(scorer_module, "load_booster", lambda *_a, **_k: fake_booster)
    monkeypatch.setattr(scorer_module, "tree_shap_for", lambda *_a: None)  # no model to read
    monkeypatch.setattr(scorer_module, "forest_for", lambda *_a: None)  # XGBoost's predictor
    monkeypatch.setattr(Scorer, "warm_up", lambda self: None)
    scorer = Scorer.open(registry, version, "auto", NAMES, SCHEMA)
    scores, timing = scorer.score_timed(np.zeros((3, len(NAMES)), dtype=np.float32))
    assert scorer.device == "cuda"
    assert fake_booster.params == {"device": "cuda"}
    assert fake_booster.inputs == [FakeDeviceArray]
    assert scores.dtype == np.float64 and scores.tolist() == [0.5] * 3
    assert timing.threads == 1
