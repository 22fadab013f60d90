"""The search runs at most `budget` distinct grid points, reproducibly, and reports the best one."""

import itertools
import json

import numpy as np
import pytest
import torch

from ranker.data import RankingData
from ranker.lgbm import LGBMRankerModel
from ranker.mlp import MLPRankerModel
from ranker.search import (
    LGBM_DEFAULT_GRID,
    MLP_DEFAULT_GRID,
    SearchError,
    grid_size,
    sample_grid,
    search_hyperparameters,
)

FEATURES = ("informative", "noise", "pop")
GRID = {"feature": ["noise", "informative", "pop"], "sign": [-1, 1]}


def make_groups(n_groups: int, seed: int, group_size: int = 10) -> RankingData:
    """One positive per group; `informative` is the label plus noise, `pop` mildly anti-correlated."""
    rng = np.random.default_rng(seed)
    n = n_groups * group_size
    labels = np.zeros((n_groups, group_size), dtype=np.float32)
    labels[np.arange(n_groups), rng.integers(group_size, size=n_groups)] = 1.0
    labels = labels.ravel()
    scalars = np.column_stack(
        [labels + rng.normal(scale=0.7, size=n), rng.normal(size=n), rng.normal(size=n) - 0.3 * labels]
    )
    vectors = rng.normal(size=(n, 4)) + labels[:, None]
    return RankingData(
        scalars=scalars, feature_names=FEATURES, group_sizes=np.full(n_groups, group_size),
        user_idx=np.repeat(np.arange(n_groups), group_size), item_idx=np.arange(n), labels=labels,
        user_vec=np.ones((n, 4)), item_vec=vectors,
    )


class FeatureScorer:
    """A one-feature ranker: scores each row by sign * one scalar column."""

    def __init__(self, *, feature: str, sign: int) -> None:
        self.feature, self.sign = feature, sign

    def fit(self, train: RankingData, *, valid: RankingData | None = None) -> "FeatureScorer":
        self.column_ = train.feature_names.index(self.feature)
        return self

    def predict(self, data: RankingData) -> np.ndarray:
        return self.sign * data.scalars[:, self.column_]


def ndcg10(scores: np.ndarray, data: RankingData) -> float:
    """Binary NDCG@10 with one positive per group, written out independently of ranker.data."""
    by_group = scores.reshape(data.n_groups, -1)
    labels = data.labels.reshape(data.n_groups, -1)
    rank_of_positive = (by_group > by_group[labels == 1][:, None]).sum(axis=1)  # 0-based
    return float(np.mean(np.where(rank_of_positive < 10, 1 / np.log2(rank_of_positive + 2), 0.0)))


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    # the networks here are tiny: on a shared 2-core box thread hand-offs cost more than the maths
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def splits():
    return make_groups(60, seed=1), make_groups(40, seed=2)


def _search(splits, **kwargs):
    train, valid = splits
    options = {"budget": 10, "seed": 0} | kwargs
    return search_hyperparameters(lambda p: FeatureScorer(**p), options.pop("grid", GRID), train=train,
                                  valid=valid, **options)


def test_whole_grid_in_grid_order_when_the_budget_covers_it(splits):
    result = _search(splits, budget=6)
    expected = [dict(zip(GRID, values)) for values in itertools.product(*GRID.values())]
    assert [t["params"] for t in result.trials] == expected
    assert len(_search(splits, budget=100).trials) == 6


def test_picks_the_best_trial(splits):
    result = _search(splits)
    assert result.best_params == {"feature": "informative", "sign": 1}
    assert result.best_score == max(t["score"] for t in result.trials)
    valid = splits[1]
    assert result.best_score == pytest.approx(ndcg10(valid.scalars[:, 0], valid))


def test_respects_the_budget_and_is_deterministic(splits):
    first = _search(splits, budget=3, seed=7)
    params = [t["params"] for t in first.trials]
    assert len(params) == 3
    assert len({tuple(p.items()) for p in params}) == 3  # distinct
    assert all(p["feature"] in GRID["feature"] and p["sign"] in GRID["sign"] for p in params)
    again = _search(splits, budget=3, seed=7)
    assert [t["params"] for t in again.trials] == params
    assert [t["score"] for t in again.trials] == [t["score"] for t in first.trials]


def test_sample_grid_draws_distinct_points_of_a_large_grid():
    grid = {"a": list(range(50)), "b": list(range(40)), "c": ["x", "y"]}
    points = sample_grid(grid, budget=25, seed=3)
    assert len({tuple(p.values()) for p in points}) == 25 and grid_size(grid) == 4000
    assert sample_grid(grid, budget=25, seed=3) == points


def test_result_is_json_serialisable(splits):
    result = _search(splits, grid={"feature": np.array(["informative", "pop"]), "sign": np.array([1])})
    restored = json.loads(json.dumps(result.to_dict()))
    assert restored["best_params"] == {"feature": "informative", "sign": 1}
    assert restored["metric"] == "ndcg@10" and len(restored["trials"]) == 2
    assert all(t["fit_seconds"] >= 0 for t in restored["trials"])


def test_bad_search_arguments_are_named(splits):
    with pytest.raises(SearchError, match="budget=0 must be a positive number of trials"):
        _search(splits, budget=0)
    with pytest.raises(SearchError, match="the grid is empty"):
        _search(splits, grid={})
    with pytest.raises(SearchError, match=r"grid\['feature'\] = 'pop' must be a non-empty list"):
        _search(splits, grid={"feature": "pop", "sign": [1]})
    with pytest.raises(SearchError, match="metric='recall@10' is not supported; use 'ndcg@K'"):
        _search(splits, metric="recall@10")


@pytest.mark.parametrize(
    ("grid", "make_model"),
    [
        (LGBM_DEFAULT_GRID, lambda p: LGBMRankerModel(**p, n_estimators=10, n_jobs=1)),
        (MLP_DEFAULT_GRID, lambda p: MLPRankerModel(**p, epochs=1)),
    ],
    ids=["lgbm", "mlp"],
)
def test_default_grids_drive_the_real_rankers(splits, grid, make_model):
    train, valid = splits
    result = search_hyperparameters(make_model, grid, train=train, valid=valid, budget=2, seed=0)
    assert len(result.trials) == 2 and 0.0 < result.best_score <= 1.0
    assert set(result.best_params) == set(grid)
    json.dumps(result.to_dict())
