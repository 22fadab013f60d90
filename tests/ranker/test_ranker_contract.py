"""The contract every registered ranker keeps: fit, predict one score per row, save/load to the same scores,
determinism given the seed, and a named error when used unfitted."""

from __future__ import annotations

import numpy as np
import pytest

from ranker.errors import NotFittedError
from ranker.ranking.data import RankingData
from ranker.ranking.registry import RANKERS

SMALL = {"lgbm": {"n_estimators": 20, "num_leaves": 7, "min_child_samples": 5}, "mlp": {"epochs": 3}}


def _data(seed: int = 0, n_users: int = 40, per_user: int = 10) -> RankingData:
    rng = np.random.default_rng(seed)
    n = n_users * per_user
    scalars = rng.normal(size=(n, 4)).astype(np.float32)
    labels = (scalars[:, 0] + 0.3 * rng.normal(size=n) > 1.0).astype(np.float32)
    return RankingData(scalars=scalars, feature_names=("a", "b", "c", "d"),
                       group_sizes=np.full(n_users, per_user, dtype=np.int64),
                       user_idx=np.repeat(np.arange(n_users), per_user).astype(np.int64),
                       item_idx=np.tile(np.arange(per_user), n_users).astype(np.int64), labels=labels,
                       user_vec=None, item_vec=None)


@pytest.fixture(params=sorted(RANKERS))
def kind(request) -> str:
    return request.param


def test_fit_predict_save_load_round_trip(kind, tmp_path):
    data = _data()
    ranker = RANKERS[kind](seed=0, **SMALL[kind]).fit(data)
    scores = ranker.predict(data)
    assert scores.shape == (data.n_rows,) and np.isfinite(scores).all()
    ranker.save(tmp_path / kind)
    np.testing.assert_allclose(RANKERS[kind].load(tmp_path / kind).predict(data), scores, rtol=1e-5, atol=1e-6)


def test_fit_is_deterministic_given_the_seed(kind):
    data = _data()
    first = RANKERS[kind](seed=0, **SMALL[kind]).fit(data).predict(data)
    second = RANKERS[kind](seed=0, **SMALL[kind]).fit(data).predict(data)
    np.testing.assert_allclose(first, second, rtol=1e-6)


def test_predict_before_fit_is_a_named_error(kind):
    with pytest.raises(NotFittedError):
        RANKERS[kind](seed=0, **SMALL[kind]).predict(_data())
