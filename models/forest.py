"""The booster's trees as flat arrays, evaluated by one CUDA kernel (or NumPy, its reference).

XGBoost's ``inplace_predict`` on CUDA costs about 0.8 ms a call whatever the batch (an H200,
2026-12-04: 0.81 ms at 1 row, 0.93 ms at 4,096), which is most of what serve's batches
take on the GPU. A forest of a few hundred shallow trees is better served by one kernel: a
thread per row walks every tree and sums the leaves, so a call is one copy in, one launch
and one copy out. The walk is XGBoost's: a value below the split condition goes left, at or
above it right, a missing one (NaN) the node's default way; margins start from the base
score's logit as XGBoost computes it in float32 and add each tree's leaf in order in
float32, which gives XGBoost's margins to the bit, and XGBoost's logistic turns them into
probabilities (its exponential rounded from double: glibc's ``expf`` differs from that in
the last bit for a few values in ten thousand). ``predict`` is the same walk in NumPy: the
dry run of the gpu tests and the unit tests compare it with XGBoost's own predictions on
the CPU. Models outside that (categorical splits, vector leaves, other objectives) raise
``Unsupported`` and keep XGBoost's predictor.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import xgboost as xgb

from fraudstream.models.treeshap import Unsupported, base_margin_of, trees_of

KERNEL = r"""
extern "C" __global__ void forest_predict(
    const float* x, const int rows, const int cols, const int trees,
    const int* roots, const int* feature, const float* threshold, const int* left,
    const int* right, const unsigned char* default_left, const float* value,
    const float base_margin, float* out) {
  const int row = blockDim.x * blockIdx.x + threadIdx.x;
  if (row >= rows) return;
  const float* r = x + (long long)row * cols;
  float margin = base_margin;
  for (int t = 0; t < trees; ++t) {
    int node = roots[t];
    int f = feature[node];
    while (f >= 0) {
      const float v = r[f];
      const bool go_left = isnan(v) ? (default_left[node] != 0) : (v < threshold[node]);
      node = go_left ? left[node] : right[node];
      f = feature[node];
    }
    margin += value[node];
  }
  // XGBoost's sigmoid; the exponential computed in double and rounded, as the NumPy twin's
  const float e = (float)exp((double)fminf(-margin, 88.7f));
  out[row] = 1.0f / (e + 1.0f + 1e-16f);
}
"""
BLOCK = 256
"""Threads per block: one row each."""


@dataclass(frozen=True)
class Forest:
    """Every node of every tree, numbered tree after tree; a leaf has feature -1."""

    roots: npt.NDArray[np.int32]
    feature: npt.NDArray[np.int32]
    threshold: npt.NDArray[np.float32]
    left: npt.NDArray[np.int32]
    right: npt.NDArray[np.int32]
    default_left: npt.NDArray[np.uint8]
    value: npt.NDArray[np.float32]
    """A leaf's value (0 on splits)."""
    base_margin: float
    per_round: int
    """Trees per boosting round (``num_parallel_tree``)."""
    depth: int
    num_features: int

    @classmethod
    def from_booster(cls, booster: xgb.Booster) -> Forest:
        model: dict[str, Any] = orjson.loads(booster.save_raw("json"))["learner"]
        base_margin = _base_margin(model)
        trees = trees_of(model)
        if not trees:
            msg = "a model without trees"
            raise Unsupported(msg)
        roots: list[int] = []
        feature: list[int] = []
        left: list[int] = []
        right: list[int] = []
        default_left: list[int] = []
        threshold: list[float] = []
        value: list[float] = []
        depth = 0
        for tree in trees:
            offset = len(feature)
            roots.append(offset)
            children = zip(tree["left_children"], tree["right_children"], strict=True)
            for node, (lo, hi) in enumerate(children):
                leaf = lo == -1
                feature.append(-1 if leaf else int(tree["split_indices"][node]))
                condition = float(tree["split_conditions"][node])
                threshold.append(0.0 if leaf else condition)
                value.append(condition if leaf else 0.0)
                left.append(offset + (node if leaf else lo))
                right.append(offset + (node if leaf else hi))
                default_left.append(int(tree["default_left"][node]))
            depth = max(depth, _depth(tree["left_children"], tree["right_children"]))
        rounds = max(1, booster.num_boosted_rounds())
        return cls(
            roots=np.asarray(roots, dtype=np.int32),
            feature=np.asarray(feature, dtype=np.int32),
            threshold=np.asarray(threshold, dtype=np.float32),
            left=np.asarray(left, dtype=np.int32),
            right=np.asarray(right, dtype=np.int32),
            default_left=np.asarray(default_left, dtype=np.uint8),
            value=np.asarray(value, dtype=np.float32),
            base_margin=base_margin,
            per_round=max(1, len(trees) // rounds),
            depth=depth,
            num_features=int(model["learner_model_param"]["num_feature"]),
        )

    def tree_count(self, rounds: int) -> int:
        """Trees in the first ``rounds`` boosting rounds (0 = all)."""
        return len(self.roots) if rounds <= 0 else min(len(self.roots), rounds * self.per_round)

    def predict(self, batch: npt.NDArray[np.float32], rounds: int = 0) -> npt.NDArray[np.float64]:
        """Probabilities from the first ``rounds`` rounds (0 = all), in NumPy."""
        return sigmoid(self.margin(batch, rounds)).astype(np.float64)

    def margin(self, batch: npt.NDArray[np.float32], rounds: int = 0) -> npt.NDArray[np.float32]:
        """Margins (log-odds) from the first ``rounds`` rounds, in float32 as XGBoost's."""
        x = np.ascontiguousarray(batch, dtype=np.float32)
        node = np.repeat(self.roots[None, : self.tree_count(rounds)], x.shape[0], axis=0)
        row = np.arange(x.shape[0])[:, None]
        for _ in range(self.depth):
            feature = self.feature[node]
            split = feature >= 0
            v = x[row, np.maximum(feature, 0)]
            go_left = np.where(np.isnan(v), self.default_left[node] != 0, v < self.threshold[node])
            node = np.where(split, np.where(go_left, self.left[node], self.right[node]), node)
        margin = np.full(x.shape[0], self.base_margin, dtype=np.float32)
        for leaf in self.value[node].T:  # tree after tree, in float32 as the kernel sums
            margin += leaf
        return margin


class CudaForest:
    """A ``Forest`` resident on one CUDA device with its kernel (compiled by CuPy at the
    first call: the proof at load, ``fraudstream.models.backend.CudaBackend``)."""

    def __init__(self, forest: Forest, xp: ModuleType, ordinal: int) -> None:
        self.forest = forest
        self._xp = xp
        self._ordinal = ordinal
        with xp.cuda.Device(ordinal):
            self._arrays = tuple(
                xp.asarray(a)
                for a in (
                    forest.roots,
                    forest.feature,
                    forest.threshold,
                    forest.left,
                    forest.right,
                    forest.default_left,
                    forest.value,
                )
            )
            self._kernel = xp.RawKernel(KERNEL, "forest_predict")

    def predict(self, batch: npt.NDArray[np.float32], rounds: int = 0) -> npt.NDArray[np.float64]:
        xp = self._xp
        rows, cols = batch.shape
        if cols != self.forest.num_features:
            msg = f"a batch of {cols} features for a model of {self.forest.num_features}"
            raise ValueError(msg)
        if rows == 0:
            return np.empty(0, dtype=np.float64)
        with xp.cuda.Device(self._ordinal):
            x = xp.asarray(np.ascontiguousarray(batch, dtype=np.float32))
            out = xp.empty(rows, dtype=xp.float32)
            grid = ((rows + BLOCK - 1) // BLOCK,)
            args = (x, np.int32(rows), np.int32(cols), np.int32(self.forest.tree_count(rounds)))
            self._kernel(
                grid, (BLOCK,), (*args, *self._arrays, np.float32(self.forest.base_margin), out)
            )
            host = xp.asnumpy(out)
        return np.asarray(host, dtype=np.float64)


def probe_rows(forest: Forest, rows: int = 2048, seed: int = 0) -> npt.NDArray[np.float32]:
    """Rows that meet the forest's splits on both sides and on them: each feature takes its
    own split conditions, the float just below them, or a missing value (a feature never
    split on, a normal draw)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, forest.num_features)).astype(np.float32)
    split = forest.feature >= 0
    for f in range(forest.num_features):
        conditions = forest.threshold[split & (forest.feature == f)]
        if conditions.size:
            x[:, f] = rng.choice(conditions, rows)
            below = rng.random(rows) < 0.5
            x[below, f] = np.nextafter(x[below, f], np.float32(-np.inf))
    x[rng.random(x.shape) < 0.2] = np.nan
    return x


def sigmoid(margin: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """XGBoost's logistic in float32 (``1 / (exp(-m) + 1 + 1e-16)``, the exponent capped at
    88.7), the exponential correctly rounded from double as glibc's ``expf`` is: the CPU
    predictor's probabilities bit for bit, so that a score equal to a threshold stays equal."""
    e = np.exp(np.minimum(-margin, np.float32(88.7)).astype(np.float64)).astype(np.float32)
    return np.float32(1.0) / (e + np.float32(1.0) + np.float32(1e-16))


def _base_margin(model: dict[str, Any]) -> float:
    """The base score's logit as XGBoost computes it, in float32 (``-logf(1/p - 1)``):
    the float64 logit differs from it in the last bit for some base scores."""
    base_margin_of(model)  # refuses what is not binary:logistic
    raw = orjson.loads(model["learner_model_param"]["base_score"])
    p = np.float32(raw[0] if isinstance(raw, list) else raw)
    return float(np.float32(-np.log(np.float64(np.float32(1.0) / p - np.float32(1.0)))))


def _depth(left: list[int], right: list[int]) -> int:
    """Splits on the longest root-to-leaf path."""
    deepest, stack = 0, [(0, 0)]
    while stack:
        node, level = stack.pop()
        if left[node] == -1:
            deepest = max(deepest, level)
            continue
        stack += [(left[node], level + 1), (right[node], level + 1)]
    return deepest
