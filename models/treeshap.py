"""Exact path-dependent TreeSHAP for a loaded booster, by table look-up (Fast TreeSHAP v2).

XGBoost's CPU ``pred_contribs`` walks every tree for every row, and reasons are on serve's
critical path for every alerted record. For path-dependent SHAP a leaf's share of a row's
attribution depends only on which of the splits on the leaf's path the row follows, so each
leaf gets a table of its features' Shapley values for every such pattern, computed once at
load (Yang, "Fast TreeSHAP", 2021, algorithm v2). Scoring a batch is then comparisons, one
look-up and one sum per feature, and gives XGBoost's numbers (float32 rounding aside; the
unit tests compare them); ``ops/bench`` times both. Models this cannot express (categorical
splits, vector leaves, other objectives, tables too large) are refused with
``Unsupported`` and the caller keeps XGBoost's own computation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import xgboost as xgb

MAX_TABLE_ENTRIES = 4_000_000
"""Largest table kept (patterns of every leaf x path features, float32): 16 MB; deeper
models (2**depth patterns a leaf) keep XGBoost's computation."""


class Unsupported(ValueError):
    """The booster has something the table method does not handle; use XGBoost's."""


@dataclass(frozen=True)
class _Leaf:
    """One leaf: its global node id, the number of splits on its path, the unique features
    met on it, the slot of each step's feature among them (root first), the share of cover
    that goes this way at each feature's steps together, and the leaf value."""

    gid: int
    depth: int
    features: list[int]
    slots: list[int]
    zero: list[float]
    value: float


class TreeShap:
    """Contributions (rows, features + 1, bias last) in margin space, like XGBoost's.

    Layout, built once: every node of every tree numbered breadth-first across the forest
    (all roots, then every tree's level 1, ...), every split a column of the ``right``
    matrix, and every (leaf, path feature) pair a column of the output's sum, ordered by
    feature so that one ``add.reduceat`` turns the looked-up values into contributions.
    """

    def __init__(self, booster: xgb.Booster) -> None:
        model = orjson.loads(booster.save_raw("json"))["learner"]
        self.num_features = int(model["learner_model_param"]["num_feature"])
        self._base_margin = base_margin_of(model)
        trees = trees_of(model)
        self._per_iteration = max(1, len(trees) // max(1, booster.num_boosted_rounds()))
        forest = _Walk()
        for tree in trees:
            forest.add(tree)
        self._expected = np.cumsum(np.asarray(forest.expected, dtype=np.float64))
        position = self._number_nodes(forest)
        self._build_tables(forest.leaves, position, forest.leaf_end)

    @property
    def rounds(self) -> int:
        return len(self._expected) // self._per_iteration

    def contribs(self, batch: npt.NDArray[np.float32], trees: int = 0) -> npt.NDArray[np.float64]:
        """SHAP values of the first ``trees`` boosting rounds (0 = all), bias last."""
        last_tree = (trees or self.rounds) * self._per_iteration - 1
        rows = batch.shape[0]
        out = np.zeros((rows, self.num_features + 1), dtype=np.float64)
        out[:, -1] = self._base_margin + self._expected[last_tree]
        pairs = self._pairs if trees in (0, self.rounds) else self._pairs.first(last_tree)
        if rows == 0 or pairs.node.size == 0:  # no rows, or every tree a single leaf
            return out
        index = np.take(self._patterns(batch), pairs.node, axis=1)
        index *= self._slots
        index += pairs.offset
        values = np.take(self._table, index)
        out[:, pairs.features] = np.add.reduceat(values, pairs.starts, axis=1)
        return out

    def _patterns(self, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.int32]:
        """Per row and node, the bits of which steps from its root the row follows."""
        x = np.take(batch, self._split_feature, axis=1)
        right = x >= self._split_threshold
        right |= np.isnan(x) & self._missing_right
        prefix = np.zeros((batch.shape[0], self._num_nodes), dtype=np.int32)
        for bit, (lo, hi, split, wants) in enumerate(self._levels):
            follows = (np.take(right, split, axis=1) == wants).astype(np.int32)
            follows <<= bit
            np.add(np.take(prefix, self._parent[lo:hi], axis=1), follows, out=prefix[:, lo:hi])
        return prefix

    def _number_nodes(self, forest: _Walk) -> dict[int, int]:
        """Breadth-first positions of every node (by global id), the split columns, and
        per level the slice of nodes with their parents' positions and split columns."""
        nodes = sorted(forest.nodes)  # by level, then global id
        position = {gid: i for i, (_, gid, _, _) in enumerate(nodes)}
        split_column = {gid: i for i, (gid, _, _, _) in enumerate(forest.splits)}
        self._split_feature = np.asarray([s[1] for s in forest.splits], dtype=np.int64)
        self._split_threshold = np.asarray([s[2] for s in forest.splits], dtype=np.float32)
        self._missing_right = np.asarray([s[3] for s in forest.splits], dtype=bool)
        self._num_nodes = len(nodes)
        self._parent = np.asarray([position.get(n[2], 0) for n in nodes], dtype=np.int64)
        levels = np.asarray([n[0] for n in nodes], dtype=np.int64)
        self._levels = []
        for level in range(1, int(levels.max(initial=0)) + 1):
            lo, hi = np.searchsorted(levels, [level, level + 1])
            split = np.asarray([split_column[n[2]] for n in nodes[lo:hi]], dtype=np.int64)
            wants = np.asarray([n[3] for n in nodes[lo:hi]], dtype=bool)
            self._levels.append((int(lo), int(hi), split, wants))
        return position

    def _build_tables(
        self, leaves: list[_Leaf], position: dict[int, int], leaf_end: list[int]
    ) -> None:
        """Each leaf's table, packed one after another in one array of (pattern, slot)
        rows, and the (leaf, feature) pairs that read them."""
        slots = max((len(leaf.features) for leaf in leaves), default=0) or 1
        entries = sum(1 << leaf.depth for leaf in leaves) * slots
        if entries > MAX_TABLE_ENTRIES:
            msg = f"a TreeSHAP table of {entries:,} entries exceeds {MAX_TABLE_ENTRIES:,}"
            raise Unsupported(msg)
        self._slots = slots
        table = np.zeros((entries // slots, slots), dtype=np.float32)
        starts = np.cumsum([0] + [1 << leaf.depth for leaf in leaves])
        shapes: dict[tuple[int, tuple[int, ...]], list[int]] = {}
        for i, leaf in enumerate(leaves):
            shapes.setdefault((leaf.depth, tuple(leaf.slots)), []).append(i)
        for (steps, path_slots), members in shapes.items():
            k = len(set(path_slots))
            zero = np.asarray([leaves[i].zero for i in members]).reshape(len(members), k)
            value = np.asarray([leaves[i].value for i in members])
            values = _leaf_tables(steps, path_slots, zero, value)
            for i, leaf_values in zip(members, values, strict=True):
                table[starts[i] : starts[i + 1], : leaf_values.shape[1]] = leaf_values
        tree_of = np.searchsorted(np.asarray(leaf_end), np.arange(len(leaves)), "right")
        rows = [
            (feature, int(tree_of[i]), position[leaf.gid], int(starts[i]) * slots + j)
            for i, leaf in enumerate(leaves)
            for j, feature in enumerate(leaf.features)
        ]  # feature, tree, node position, offset
        self._table = table.ravel()
        rows.sort()
        columns = np.asarray(rows, dtype=np.int64).reshape(-1, 4).T
        self._pairs = _Pairs(*columns)


@dataclass(frozen=True)
class _Pairs:
    """The (leaf, path feature) pairs, ordered by feature, and where each feature's run
    starts (for ``add.reduceat``)."""

    feature: npt.NDArray[np.int64]
    tree: npt.NDArray[np.int64]
    node: npt.NDArray[np.int64]
    offset: npt.NDArray[np.int64]

    @property
    def features(self) -> npt.NDArray[np.int64]:
        return self._runs[0]

    @property
    def starts(self) -> npt.NDArray[np.int64]:
        return self._runs[1]

    @cached_property
    def _runs(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        used, starts = np.unique(self.feature, return_index=True)
        return used, starts

    def first(self, last_tree: int) -> _Pairs:
        keep = self.tree <= last_tree
        return _Pairs(self.feature[keep], self.tree[keep], self.node[keep], self.offset[keep])


def trees_of(model: dict[str, Any]) -> list[dict[str, Any]]:
    booster = model["gradient_booster"]
    if booster.get("name") != "gbtree":
        msg = f"booster {booster.get('name')!r} is not gbtree"
        raise Unsupported(msg)
    trees: list[dict[str, Any]] = booster["model"]["trees"]
    for tree in trees:
        if any(tree.get("split_type", [])) or tree.get("categories"):
            msg = "categorical splits"
            raise Unsupported(msg)
        if int(tree["tree_param"].get("size_leaf_vector", "1")) > 1:
            msg = "vector leaves"
            raise Unsupported(msg)
    return trees


def base_margin_of(model: dict[str, Any]) -> float:
    objective = model["objective"]["name"]
    if objective != "binary:logistic":
        msg = f"objective {objective!r}"
        raise Unsupported(msg)
    base = orjson.loads(model["learner_model_param"]["base_score"])
    p = float(base[0] if isinstance(base, list) else base)
    return math.log(p / (1.0 - p))


@dataclass
class _Walk:
    """One depth-first walk of every tree, in order, with global node ids (a tree's ids
    follow the previous tree's)."""

    nodes: list[tuple[int, int, int, bool]] = field(default_factory=list)
    """(level, global id, parent's global id or -1, whether it is its parent's right child)."""
    splits: list[tuple[int, int, float, bool]] = field(default_factory=list)
    """(global id, feature, threshold, whether a missing value goes right), per split."""
    leaves: list[_Leaf] = field(default_factory=list)
    leaf_end: list[int] = field(default_factory=list)
    """Per tree, the number of leaves up to and including it."""
    expected: list[float] = field(default_factory=list)
    """Per tree, its expected value (the cover-weighted mean leaf)."""
    base: int = 0

    def add(self, tree: dict[str, Any]) -> None:
        left, right = tree["left_children"], tree["right_children"]
        feature, value, cover = tree["split_indices"], tree["split_conditions"], tree["sum_hessian"]
        base, expected = self.base, 0.0
        # node, level, parent, is right child, split nodes on the path, cover shares
        stack: list[tuple[int, int, int, bool, list[int], list[float]]] = [
            (0, 0, -1, False, [], [])
        ]
        while stack:
            node, level, parent, is_right, path, zeros = stack.pop()
            self.nodes.append((level, base + node, parent, is_right))
            if left[node] == -1:
                feats = [feature[n - base] for n in path]
                self.leaves.append(_leaf(base + node, len(path), zeros, feats, value[node]))
                expected += value[node] * math.prod(zeros)
                continue
            missing_right = not tree["default_left"][node]
            self.splits.append((base + node, feature[node], value[node], missing_right))
            for child, goes_right in ((right[node], True), (left[node], False)):
                share = cover[child] / cover[node] if cover[node] > 0 else 0.0
                stack.append(
                    (
                        child,
                        level + 1,
                        base + node,
                        goes_right,
                        [*path, base + node],
                        [*zeros, share],
                    )
                )
        self.leaf_end.append(len(self.leaves))
        self.expected.append(expected)
        self.base += len(left)


def _leaf(gid: int, depth: int, zeros: list[float], feats: list[int], value: float) -> _Leaf:
    features = list(dict.fromkeys(feats))
    slots = [features.index(f) for f in feats]
    zero = [
        math.prod(z for z, s in zip(zeros, slots, strict=True) if s == j)
        for j in range(len(features))
    ]
    return _Leaf(gid, depth, features, slots, zero, value)


def _leaf_tables(
    steps: int,
    slots: tuple[int, ...],
    zero: npt.NDArray[np.float64],
    value: npt.NDArray[np.float64],
) -> npt.NDArray[np.float64]:
    """Shapley values of the path features of leaves that share a path shape (``steps``
    splits, the feature slot of each), for every pattern of followed steps: (leaves,
    2**steps, k), from each leaf's cover shares ``zero`` (leaves, k) and ``value``.

    With ``o_j`` = 1 when the row follows every step on feature ``j`` and ``z_j`` the share
    of cover going this way at those steps, a leaf's game is
    ``v(S) = value * prod_{j in S} o_j * prod_{j not in S} z_j`` over its ``k`` features,
    and ``phi_i = (o_i - z_i) * value * sum_s w(s) * e_s`` where ``e_s`` sums, over the
    ``s``-subsets of the other features, the products of ``o`` inside and ``z`` outside
    (the coefficients of ``prod_{j != i} (z_j + o_j t)``) and ``w(s) = s!(k-s-1)!/k!``.
    """
    k = zero.shape[1]
    followed = (np.arange(1 << steps)[:, None] >> np.arange(steps)) & 1  # (2**d, d)
    o = np.ones((1 << steps, k))
    for step, slot in enumerate(slots):
        o[:, slot] *= followed[:, step]
    weights = np.array(
        [math.factorial(s) * math.factorial(k - s - 1) / math.factorial(k) for s in range(k)]
    )
    out = np.zeros((len(value), 1 << steps, k))
    for i in range(k):
        coeffs = np.zeros((len(value), 1 << steps, k))
        coeffs[:, :, 0] = 1.0
        for j in range(k):
            if j != i:
                shifted = np.zeros_like(coeffs)
                shifted[:, :, 1:] = coeffs[:, :, :-1] * o[None, :, j : j + 1]
                coeffs = coeffs * zero[:, j, None, None] + shifted
        out[:, :, i] = (o[None, :, i] - zero[:, i, None]) * value[:, None] * (coeffs @ weights)
    return out
