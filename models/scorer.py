"""The scorer: a verified, warmed-up model version ready to score batches.

Thread-safety: a ``Scorer`` is immutable after ``load`` and every method may be called
from many threads at once. Prediction goes through XGBoost calls that are thread-safe for
tree models, and each thread count has its own booster so nothing is reconfigured while
scoring. ``last_timing`` is per thread. To change models, load a new ``Scorer`` and swap
the reference between batches.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from fraudstream.models import threads as thread_policy
from fraudstream.models.backend import (
    Backend,
    CpuBackend,
    CudaBackend,
    Scores,
    forest_for,
    import_cupy,
    load_booster,
    tree_shap_for,
)
from fraudstream.models.device import resolve_device
from fraudstream.models.exceptions import ModelCorrupt, ModelNotFound, ModelSchemaMismatch
from fraudstream.models.manifest import RUNG_PARTIAL, RUNG_TRUNCATED, Manifest, Thresholds
from fraudstream.models.registry import Registry

if TYPE_CHECKING:
    from fraudstream.features.definitions import FeatureConfig

logger = logging.getLogger(__name__)

DECISIONS = ("approve", "review", "decline")
"""Decision names indexed by the codes ``Scorer.decide`` returns."""


@dataclass(frozen=True)
class ScoreTiming:
    """Timing of one ``score`` call, for the latency planner."""

    rows: int
    """Rows in the batch."""
    trees: int
    """Trees used."""
    threads: int
    """CPU threads used (1 on cuda)."""
    device: str
    """Device that scored."""
    predict_s: float
    """Seconds in the predictor (XGBoost's, or the forest kernel on cuda, the transfers to
    and from the GPU included)."""
    total_s: float
    """Seconds for the whole call, including input checks and conversion."""


class Scorer:
    """A loaded model version; see the module docstring for thread-safety."""

    DECISIONS = DECISIONS

    def __init__(self, manifest: Manifest, backend: Backend, policy: thread_policy.ThreadPolicy):
        self.manifest = manifest
        self.version = manifest.version
        self.device = backend.device
        self.num_trees = manifest.num_trees
        self.truncation_trees: int | None = None
        """Trees of the truncated rung; None: the rung is off (a manifest without its
        thresholds)."""
        if manifest.truncated_thresholds is not None:
            self.truncation_trees = manifest.truncated_trees()
        self.thresholds: Thresholds = manifest.thresholds
        self.feature_names = manifest.feature_names
        self.thread_policy = policy
        self._backend = backend
        self._local = threading.local()

    @classmethod
    def load(
        cls,
        registry: Registry,
        version: str | None = None,
        device: str = "auto",
        config: FeatureConfig | None = None,
        threads: int | None = None,
    ) -> Scorer:
        """Load ``version`` (None = CURRENT) checked against the running feature definitions;
        on the CPU, one batch uses at most ``threads`` threads (None: every usable core)."""
        from fraudstream.features.definitions import FeatureConfig

        config = config or FeatureConfig()
        names, schema_hash = config.feature_names, config.schema_hash()
        return cls.open(
            registry,
            version,
            device,
            names,
            schema_hash,
            features=config.describe(),
            threads=threads,
        )

    @classmethod
    def open(
        cls,
        registry: Registry,
        version: str | None,
        device: str,
        feature_names: tuple[str, ...],
        schema_hash: str,
        calibrate: bool = True,
        features: Mapping[str, Any] | None = None,
        threads: int | None = None,
    ) -> Scorer:
        """Like ``load`` with the expected feature names and schema hash given explicitly
        (``features``: the running ``FeatureConfig.describe()``, to say what differs)."""
        version = version or _current(registry)
        manifest, raw = registry.read_model(version)
        _check_schema(manifest, feature_names, schema_hash, features or {})
        resolved = resolve_device(device, need_cupy=True)
        backend = _build_backend(raw, manifest, resolved, threads)
        policy = _policy(backend, len(feature_names), calibrate)
        scorer = cls(manifest, backend, policy)
        scorer.warm_up()
        logger.info(
            "loaded model %s on %s (%d trees, truncated rung %s, %s)",
            scorer.version,
            scorer.device,
            scorer.num_trees,
            scorer.truncation_trees or "off",
            _threads_said(policy),
        )
        return scorer

    def with_policy(self, policy: thread_policy.ThreadPolicy) -> Scorer:
        """A scorer sharing this one's model but using ``policy`` (benchmarks, tests)."""
        if policy.cores != self.thread_policy.cores:
            msg = f"policy.cores must be {self.thread_policy.cores} (the loaded thread counts)"
            raise ValueError(msg)
        return Scorer(self.manifest, self._backend, policy)

    def score(self, batch: npt.ArrayLike, trees: int | None = None) -> Scores:
        """Fraud probabilities for a (rows, features) float32 batch; NaN = missing."""
        return self.score_timed(batch, trees)[0]

    def score_timed(
        self, batch: npt.ArrayLike, trees: int | None = None
    ) -> tuple[Scores, ScoreTiming]:
        """``score`` plus its timing (also kept as this thread's ``last_timing``)."""
        began = time.perf_counter()
        values = self._as_batch(batch)
        used = self._trees(trees)
        threads = self._threads(values.shape[0])
        predict_began = time.perf_counter()
        if values.shape[0] == 0:
            scores: Scores = np.empty(0, dtype=np.float64)
        else:
            scores = self._backend.predict(values, used, threads)
        done = time.perf_counter()
        timing = ScoreTiming(
            rows=values.shape[0],
            trees=used or self.num_trees,
            threads=threads,
            device=self.device,
            predict_s=done - predict_began,
            total_s=done - began,
        )
        self._local.timing = timing
        return scores, timing

    def rung_quality(self) -> dict[str, float | None]:
        """Average precision of each lower rung relative to the full path, as measured for
        this model (None: not measured; the truncated rung is None when it is off)."""
        quality = {
            rung: self.manifest.rung_quality(rung) for rung in (RUNG_TRUNCATED, RUNG_PARTIAL)
        }
        if self.truncation_trees is None:
            quality[RUNG_TRUNCATED] = None
        return quality

    @property
    def last_timing(self) -> ScoreTiming | None:
        """Timing of this thread's latest ``score`` call (None before the first)."""
        timing: ScoreTiming | None = getattr(self._local, "timing", None)
        return timing

    def reasons(
        self, batch: npt.ArrayLike, k: int = 3, trees: int | None = None
    ) -> list[list[tuple[str, float]]]:
        """Per row, up to ``k`` features that pushed the score up most (log-odds, > 0)."""
        values = self._as_batch(batch)
        if values.shape[0] == 0:
            return []
        threads = self._threads(values.shape[0])
        contribs = self._backend.contribs(values, self._trees(trees), threads)[:, :-1]
        top = np.argsort(-contribs, axis=1, kind="stable")[:, :k]
        top_values = np.take_along_axis(contribs, top, axis=1)
        names = self.feature_names
        return [
            [(names[j], float(v)) for j, v in zip(row, row_values, strict=True) if v > 0]
            for row, row_values in zip(top.tolist(), top_values.tolist(), strict=True)
        ]

    def decide(self, scores: npt.ArrayLike, rung: str | None = None) -> npt.NDArray[np.int8]:
        """Decision codes (index into ``DECISIONS``): 0 approve, 1 review, 2 decline, with
        the thresholds of the ladder rung that made ``scores`` (None: the full path;
        ``RUNG_TRUNCATED``, ``RUNG_PARTIAL``)."""
        values = np.asarray(scores, dtype=np.float64)
        chosen = self.manifest.rung_thresholds(rung)
        if chosen is None:
            msg = f"model {self.version} has no thresholds for the {rung} rung"
            raise ValueError(msg)
        review = values >= chosen.review
        decline = values >= chosen.decline
        return (review.astype(np.int8) + decline.astype(np.int8)).astype(np.int8)

    def warm_up(self) -> None:
        """Run each code path once so the first real batch does not pay for allocation."""
        batch = np.full((64, len(self.feature_names)), np.nan, dtype=np.float32)
        for rows in (1, 64):
            self.score(batch[:rows])
            if self.truncation_trees is not None:
                self.score(batch[:rows], trees=self.truncation_trees)
        self.reasons(batch[:1])

    def _as_batch(self, batch: npt.ArrayLike) -> npt.NDArray[np.float32]:
        values = np.asarray(batch, dtype=np.float32)
        if values.ndim != 2 or values.shape[1] != len(self.feature_names):
            msg = f"batch must have shape (rows, {len(self.feature_names)}), got {values.shape}"
            raise ValueError(msg)
        return values

    def _trees(self, trees: int | None) -> int:
        if trees is None or trees == self.num_trees:
            return 0
        if not 1 <= trees <= self.num_trees:
            msg = f"trees must be within 1..{self.num_trees} for model {self.version}, got {trees}"
            raise ValueError(msg)
        return trees

    def _threads(self, rows: int) -> int:
        return 1 if self.device != "cpu" else self.thread_policy.threads_for(rows)


def _current(registry: Registry) -> str:
    current = registry.current()
    if current is None:
        msg = f"registry {registry.root} has no CURRENT model; run fraudstream models promote"
        raise ModelNotFound(msg)
    return current


def _check_schema(
    manifest: Manifest, names: tuple[str, ...], schema_hash: str, running: Mapping[str, Any]
) -> None:
    """Refuse a model whose features the running code does not compute, saying what
    differs: the feature set version, the names, or the windows, delay and time zone."""
    trained_set = manifest.feature_set_version
    running_set = running.get("feature_set_version")
    head = f"model {manifest.version} cannot be served by this build: "
    retrain = "; retrain it with fraudstream train"
    if None not in (trained_set, running_set) and trained_set != running_set:
        msg = head + f"it was trained on feature set {trained_set} "
        msg += f"({len(manifest.feature_names)} features), this build computes feature set "
        msg += f"{running_set} ({len(names)} features{_name_changes(manifest, names)})"
        raise ModelSchemaMismatch(msg + retrain)
    if manifest.feature_names != tuple(names):
        msg = head + f"its features differ from the running ones{_name_changes(manifest, names)}"
        raise ModelSchemaMismatch(msg + retrain)
    if manifest.schema_hash != schema_hash:
        msg = head + f"its feature schema hash is {manifest.schema_hash[:12]}, the running "
        msg += f"definitions hash to {schema_hash[:12]} ({_setting_changes(manifest, running)})"
        raise ModelSchemaMismatch(msg + retrain + " or run with the settings it was trained with")


def _name_changes(manifest: Manifest, names: tuple[str, ...]) -> str:
    added = [n for n in names if n not in manifest.feature_names]
    dropped = [n for n in manifest.feature_names if n not in names]
    parts = [f"adds {', '.join(added)}"] if added else []
    parts += [f"lacks {', '.join(dropped)}"] if dropped else []
    return ": " + "; ".join(parts or ["same names in another order"])


def _setting_changes(manifest: Manifest, running: Mapping[str, Any]) -> str:
    trained = manifest.features
    if not trained or not running:
        return "windows, delay or time zone changed"
    changed = [
        f"{key} {trained.get(key)!r} in the model, {running.get(key)!r} running"
        for key in sorted(set(trained) | set(running))
        if trained.get(key) != running.get(key)
    ]
    return "; ".join(changed) or "same settings, other definitions"


def _threads_said(policy: thread_policy.ThreadPolicy) -> str:
    if policy.cores == 1 or policy.multi_from_rows == sys.maxsize:
        return "one scoring thread"
    return f"{policy.cores} scoring threads from {policy.multi_from_rows} rows"


def _build_backend(raw: bytes, manifest: Manifest, device: str, threads: int | None) -> Backend:
    source = f"model {manifest.version}"
    if device == "cpu":
        cores = thread_policy.usable_cores()
        if threads is not None:
            if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
                msg = f"threads must be a whole number >= 1, got {threads!r}"
                raise ValueError(msg)
            cores = min(cores, threads)
        backend: Backend = CpuBackend(raw, source, cores)
    else:
        booster = load_booster(raw, source)
        shap, forest = tree_shap_for(booster, source), forest_for(booster, source)
        backend = CudaBackend(booster, device, import_cupy(), shap, forest)
    _check_booster_shape(backend, manifest)
    return backend


def _check_booster_shape(backend: Backend, manifest: Manifest) -> None:
    booster = backend.booster
    if booster.num_boosted_rounds() != manifest.num_trees:
        msg = f"model {manifest.version} has {booster.num_boosted_rounds()} trees but its "
        msg += f"manifest says {manifest.num_trees}; re-register it"
        raise ModelCorrupt(msg)
    if booster.num_features() != len(manifest.feature_names):
        msg = f"model {manifest.version} expects {booster.num_features()} features but its "
        msg += f"manifest names {len(manifest.feature_names)}; re-register it"
        raise ModelCorrupt(msg)


def _policy(backend: Backend, num_features: int, calibrate: bool) -> thread_policy.ThreadPolicy:
    if isinstance(backend, CudaBackend) and calibrate:
        _measure_reasons(backend, num_features)
    if not isinstance(backend, CpuBackend):
        return thread_policy.ThreadPolicy(cores=1, multi_from_rows=sys.maxsize)
    if not calibrate:
        return thread_policy.ThreadPolicy(cores=backend.cores, multi_from_rows=1024)

    def predict(batch: npt.NDArray[np.float32], threads: int) -> object:
        return backend.predict(batch, 0, threads)

    return thread_policy.calibrate(predict, num_features, backend.cores)


def _measure_reasons(backend: CudaBackend, num_features: int) -> None:
    logger.info("scores on %s: %s", backend.device, backend.predictor)
    backend.measure_shap(num_features)
    start = backend.shap_on_gpu_from_rows
    if backend.tree_shap is None:
        logger.info("reasons on %s: XGBoost's GPU TreeSHAP (no table)", backend.device)
    elif start == sys.maxsize:
        logger.info("reasons on %s: table TreeSHAP (the GPU's was not faster)", backend.device)
    else:
        logger.info(
            "reasons on %s: table TreeSHAP below %d rows, the GPU's from there",
            backend.device,
            start,
        )
