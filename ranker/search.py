"""Hyperparameter search for the rankers: a seeded random sample of a grid, scored on a validation split.

Any model with the ranker contract works: `make_model(params)` returns an unfitted model with
`fit(train, *, valid=...)` and `predict(data) -> scores`. The score is computed here on `valid`, so every
ranker is judged by the same NDCG, not by its own early-stopping metric.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ranker.data import RankingData, ndcg_at_k

logger = logging.getLogger(__name__)

# Early stopping picks the number of trees / epochs, so the grids leave it out.
LGBM_DEFAULT_GRID: dict[str, tuple] = {
    "learning_rate": (0.03, 0.05, 0.1),
    "num_leaves": (15, 31, 63),
    "min_child_samples": (10, 20, 50),
}
MLP_DEFAULT_GRID: dict[str, tuple] = {
    "hidden": ((64,), (128, 64), (256, 128)),
    "lr": (3e-4, 1e-3, 3e-3),
    "weight_decay": (0.0, 1e-5, 1e-4),
    "loss": ("listwise", "pairwise"),
}
_METRIC = re.compile(r"^ndcg@(?P<k>[1-9][0-9]*)$")


class SearchError(ValueError):
    """The grid, budget or metric of a search is invalid."""


@dataclass(frozen=True)
class SearchResult:
    """The best parameters and every trial (params, score, fit_seconds), in the order they ran."""

    best_params: dict
    best_score: float
    metric: str
    trials: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        """A JSON-serialisable copy (tuples become lists)."""
        return {
            "best_params": _jsonable(self.best_params),
            "best_score": self.best_score,
            "metric": self.metric,
            "trials": [_jsonable(trial) for trial in self.trials],
        }


def search_hyperparameters(
    make_model: Callable[[dict], object],
    grid: Mapping[str, Sequence],
    *,
    train: RankingData,
    valid: RankingData,
    budget: int,
    seed: int,
    metric: str = "ndcg@10",
) -> SearchResult:
    """Fit and score at most `budget` grid points; the whole grid in grid order when it fits the budget.

    Ties keep the earlier trial, so the result is deterministic given `seed`.
    """
    k = _metric_k(metric)
    if valid.labels is None:
        raise SearchError("valid has no labels; build it with build_features(..., labels=...)")
    trials: list[dict] = []
    for params in sample_grid(grid, budget=budget, seed=seed):
        started = time.perf_counter()
        model = make_model(dict(params)).fit(train, valid=valid)
        fit_seconds = time.perf_counter() - started
        score = ndcg_at_k(model.predict(valid), valid.labels, valid.group_sizes, k)
        trials.append({"params": params, "score": float(score), "fit_seconds": float(fit_seconds)})
        logger.info("trial %d: %s=%.4f with %s (%.1fs)", len(trials), metric, score, params, fit_seconds)
    best = max(trials, key=lambda trial: trial["score"])  # max keeps the first of equal scores
    return SearchResult(
        best_params=dict(best["params"]), best_score=best["score"], metric=metric, trials=trials
    )


def sample_grid(grid: Mapping[str, Sequence], *, budget: int, seed: int) -> list[dict]:
    """Distinct grid points: all in grid order if budget >= grid size, else `budget` drawn at random."""
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise SearchError(f"budget={budget!r} must be a positive number of trials")
    keys, values = _checked_grid(grid)
    sizes = [len(v) for v in values]
    n_points = math.prod(sizes)
    if budget >= n_points:
        flat = range(n_points)
    else:
        flat = np.random.default_rng(seed).choice(n_points, size=budget, replace=False).tolist()
    points = []
    for index in flat:
        digits = np.unravel_index(index, sizes)  # row-major: the same order as itertools.product
        points.append({key: values[i][int(d)] for i, (key, d) in enumerate(zip(keys, digits))})
    return points


def grid_size(grid: Mapping[str, Sequence]) -> int:
    return math.prod(len(v) for v in _checked_grid(grid)[1])


def _checked_grid(grid: Mapping[str, Sequence]) -> tuple[list[str], list[list]]:
    if not grid:
        raise SearchError("the grid is empty; give at least one parameter with a list of values")
    keys, values = list(grid), []
    for key in keys:
        options = grid[key]
        is_list = isinstance(options, Sequence) or (isinstance(options, np.ndarray) and options.ndim == 1)
        if isinstance(options, (str, bytes)) or not is_list or len(options) == 0:
            raise SearchError(
                f"grid[{key!r}] = {options!r} must be a non-empty list of values, e.g. {key!r}: [0.1, 0.2]"
            )
        values.append([_native(v) for v in options])
    return keys, values


def _metric_k(metric: str) -> int:
    match = _METRIC.match(metric)
    if match is None:
        raise SearchError(f"metric={metric!r} is not supported; use 'ndcg@K' with K >= 1, e.g. 'ndcg@10'")
    return int(match["k"])


def _native(value):
    """numpy scalars -> Python scalars, so params pass to constructors and JSON unchanged."""
    return value.item() if isinstance(value, np.generic) else value


def _jsonable(value):
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return _native(value)
