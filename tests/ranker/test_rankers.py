"""Both rankers learn a planted preference, beat popularity, round-trip through save/load, fail clearly."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from ranker.errors import NotFittedError
from ranker.ranking.data import (
    ArtifactError,
    FeatureMismatchError,
    RankingData,
    RankingDataError,
)
from ranker.ranking.lgbm import LGBMRankerModel
from ranker.ranking.mlp import InvalidParamError, MLPRankerModel

GROUP_SIZE, N_CLUSTERS, DIM = 20, 4, 8
FEATURES = ("informative", "noise_a", "noise_b", "noise_c", "pop")


def make_groups(n_groups: int, seed: int, *, positives: bool = True) -> RankingData:
    """Users and items in latent clusters; the one positive per group is the item of the user's cluster.

    `informative` is the label plus noise, `pop` is mildly anti-correlated with it, the rest is noise;
    the vectors carry the cluster (for the MLP).
    """
    rng = np.random.default_rng(seed)
    centroids = rng.normal(size=(N_CLUSTERS, DIM))
    user_cluster = rng.integers(N_CLUSTERS, size=n_groups)
    # every other candidate comes from another cluster
    shift = rng.integers(1, N_CLUSTERS, size=(n_groups, GROUP_SIZE))
    item_cluster = (user_cluster[:, None] + shift) % N_CLUSTERS
    positive_at = rng.integers(GROUP_SIZE, size=n_groups)
    item_cluster[np.arange(n_groups), positive_at] = user_cluster
    labels = (item_cluster == user_cluster[:, None]).astype(np.float32).ravel()
    if not positives:
        labels[:] = 0.0
    truth = (item_cluster == user_cluster[:, None]).astype(np.float32).ravel()
    n = n_groups * GROUP_SIZE
    scalars = np.column_stack(
        [truth + rng.normal(scale=1.0, size=n)]
        + [rng.normal(size=n) for _ in range(3)]
        + [rng.normal(size=n) - 0.5 * truth]
    )
    user_vec = np.repeat(centroids[user_cluster], GROUP_SIZE, axis=0) + rng.normal(scale=0.7, size=(n, DIM))
    item_vec = centroids[item_cluster.ravel()] + rng.normal(scale=0.7, size=(n, DIM))
    return RankingData(
        scalars=scalars, feature_names=FEATURES, group_sizes=np.full(n_groups, GROUP_SIZE),
        user_idx=np.repeat(np.arange(n_groups), GROUP_SIZE), item_idx=np.arange(n), labels=labels,
        user_vec=user_vec, item_vec=item_vec,
    )


def ndcg10(scores: np.ndarray, data: RankingData) -> float:
    """NDCG@10 with binary labels, written out group by group (independent of ranker.ranking.data.ndcg_at_k)."""
    values, start = [], 0
    for size in data.group_sizes:
        labels = data.labels[start:start + size]
        ranked = labels[np.argsort(-scores[start:start + size], kind="stable")][:10]
        dcg = float(np.sum(ranked / np.log2(np.arange(2, ranked.size + 2))))
        ideal = float(np.sum(1.0 / np.log2(np.arange(2, min(int(labels.sum()), 10) + 2))))
        values.append(dcg / ideal)
        start += size
    return float(np.mean(values))


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    # the networks here are tiny: on a shared 2-core box thread hand-offs cost more than the maths
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def splits():
    return make_groups(300, seed=1), make_groups(80, seed=2), make_groups(150, seed=3)


def _popularity_ndcg(test: RankingData) -> float:
    return ndcg10(test.scalars[:, FEATURES.index("pop")], test)


def _rename(data: RankingData, old: str, new: str) -> RankingData:
    return replace(data, feature_names=tuple(new if f == old else f for f in data.feature_names))


def _lgbm(**overrides) -> LGBMRankerModel:
    defaults = {"n_estimators": 60, "learning_rate": 0.1, "early_stopping_rounds": 10, "n_jobs": 1}
    return LGBMRankerModel(**defaults | overrides)


@pytest.fixture(scope="module")
def fitted_lgbm(splits):
    train, valid, _ = splits
    return _lgbm().fit(train, valid=valid)


def test_lgbm_beats_popularity_and_finds_the_informative_feature(splits, fitted_lgbm):
    test = splits[2]
    model_ndcg, pop_ndcg = ndcg10(fitted_lgbm.predict(test), test), _popularity_ndcg(test)
    assert model_ndcg > pop_ndcg + 0.25, (model_ndcg, pop_ndcg)
    gains = fitted_lgbm.feature_importances_
    assert set(gains) == set(FEATURES) and max(gains, key=gains.get) == "informative"
    assert 1 <= fitted_lgbm.best_iteration_ <= 60


def test_lgbm_early_stopping_keeps_the_best_iteration(splits):
    train, valid, _ = splits
    stopped = _lgbm(n_estimators=300, learning_rate=0.3, early_stopping_rounds=5).fit(train, valid=valid)
    assert stopped.best_iteration_ < 300
    assert _lgbm(n_estimators=7).fit(train).best_iteration_ == 7  # no valid: every tree is kept


def test_lgbm_ignores_groups_without_positive(splits):
    train, valid, test = splits
    padded = _concat(train, make_groups(40, seed=9, positives=False))
    np.testing.assert_array_equal(
        _lgbm().fit(padded, valid=valid).predict(test), _lgbm().fit(train, valid=valid).predict(test)
    )


def test_lgbm_save_load_round_trip(tmp_path, splits, fitted_lgbm):
    test = splits[2]
    folder = fitted_lgbm.save(tmp_path / "lgbm")
    assert sorted(p.name for p in folder.iterdir()) == ["meta.json", "model.txt"]
    loaded = LGBMRankerModel.load(folder)
    np.testing.assert_array_equal(loaded.predict(test), fitted_lgbm.predict(test))
    assert loaded.best_iteration_ == fitted_lgbm.best_iteration_
    assert loaded.get_params() == fitted_lgbm.get_params()
    with pytest.raises(ArtifactError, match="holds a 'lgbm_ranker' artifact .* not a 'mlp_ranker'"):
        MLPRankerModel.load(folder)


def test_lgbm_errors(splits, fitted_lgbm):
    train, _, test = splits
    with pytest.raises(NotFittedError, match="LGBMRankerModel is not fitted yet"):
        LGBMRankerModel().predict(test)
    with pytest.raises(FeatureMismatchError, match=r"missing \['pop'\], unexpected \['popularity'\]"):
        fitted_lgbm.predict(_rename(test, "pop", "popularity"))
    with pytest.raises(RankingDataError, match="no query group of train holds a positive label"):
        _lgbm().fit(make_groups(10, seed=4, positives=False))
    with pytest.raises(RankingDataError, match="train has no labels"):
        _lgbm().fit(replace(train, labels=None))


def _mlp(**overrides) -> MLPRankerModel:
    return MLPRankerModel(**{"hidden": (32, 16), "epochs": 6, "lr": 3e-3, "batch_groups": 32} | overrides)


@pytest.fixture(scope="module")
def fitted_mlps(splits):
    train, valid, _ = splits
    return {loss: _mlp(loss=loss).fit(train, valid=valid) for loss in ("listwise", "pairwise")}


@pytest.mark.parametrize("loss", ["listwise", "pairwise"])
def test_mlp_beats_popularity(splits, fitted_mlps, loss):
    test = splits[2]
    model_ndcg, pop_ndcg = ndcg10(fitted_mlps[loss].predict(test), test), _popularity_ndcg(test)
    assert model_ndcg > pop_ndcg + 0.25, (model_ndcg, pop_ndcg)


def test_mlp_without_vectors_learns_from_scalars(splits):
    train, valid, test = (replace(d, user_vec=None, item_vec=None) for d in splits)
    model = _mlp().fit(train, valid=valid)
    assert ndcg10(model.predict(test), test) > _popularity_ndcg(test) + 0.25


def test_mlp_early_stopping_restores_the_best_epoch(splits):
    train, valid, _ = splits
    model = _mlp(lr=1e-2, epochs=15, patience=2).fit(train, valid=valid)
    scores = [h["valid_ndcg"] for h in model.history_]
    assert model.best_epoch_ == 1 + int(np.argmax(scores))
    assert len(scores) == model.best_epoch_ + 2 < 15  # stopped after `patience` epochs without gain
    assert ndcg10(model.predict(valid), valid) == pytest.approx(max(scores), abs=1e-9)
    assert _mlp(epochs=2).fit(train).best_epoch_ == 2  # no valid: the last epoch is kept


@pytest.mark.parametrize("loss", ["listwise", "pairwise"])
def test_mlp_is_deterministic_and_ignores_groups_without_positive(splits, fitted_mlps, loss):
    train, valid, test = splits
    padded = _concat(train, make_groups(40, seed=9, positives=False))
    again = _mlp(loss=loss).fit(padded, valid=valid)
    np.testing.assert_array_equal(again.predict(test), fitted_mlps[loss].predict(test))


@pytest.mark.parametrize("loss", ["listwise", "pairwise"])
def test_mlp_save_load_round_trip(tmp_path, splits, fitted_mlps, loss):
    test = splits[2]
    model = fitted_mlps[loss]
    loaded = MLPRankerModel.load(model.save(tmp_path / "mlp"))
    np.testing.assert_array_equal(loaded.predict(test), model.predict(test))
    assert loaded.get_params() == model.get_params() and loaded.best_epoch_ == model.best_epoch_
    assert loaded.history_ == model.history_ and loaded.history_  # the training curve, for the run's report


def test_mlp_errors(splits, fitted_mlps):
    train, _, test = splits
    model = fitted_mlps["listwise"]
    with pytest.raises(NotFittedError, match="MLPRankerModel is not fitted yet"):
        MLPRankerModel().predict(test)
    with pytest.raises(FeatureMismatchError, match=r"missing \['noise_a'\], unexpected \['other'\]"):
        model.predict(_rename(test, "noise_a", "other"))
    with pytest.raises(FeatureMismatchError, match="trained on 8-d user/item vectors but data has no vec"):
        model.predict(replace(test, user_vec=None, item_vec=None))
    with pytest.raises(InvalidParamError, match=r"loss='softmax' is not a ranking loss; options: \['listw"):
        _mlp(loss="softmax").fit(train)


def _concat(first: RankingData, second: RankingData) -> RankingData:
    def join(a, b):
        return np.concatenate([a, b])

    return RankingData(
        scalars=join(first.scalars, second.scalars), feature_names=first.feature_names,
        group_sizes=join(first.group_sizes, second.group_sizes),
        user_idx=join(first.user_idx, second.user_idx + first.n_groups),
        item_idx=join(first.item_idx, second.item_idx + first.n_rows),
        labels=join(first.labels, second.labels), user_vec=join(first.user_vec, second.user_vec),
        item_vec=join(first.item_vec, second.item_vec),
    )


@pytest.mark.parametrize("kind", ["lgbm", "mlp"])
def test_the_pipeline_builds_each_ranker_with_settings_it_accepts(kind):
    """make_ranker hands eval_at as each ranker takes it (a tuple for LightGBM, an int for the MLP); both fit."""
    from pipelines.config import load_config
    from pipelines.model.fit_ranker import make_ranker

    cfg = load_config(None, ["data.demo=false", f"train.ranker.kind='{kind}'"]).train
    ranker = make_ranker(cfg, {"n_estimators": 5} if kind == "lgbm" else {"epochs": 1})
    assert ranker.eval_at == ((cfg.tune.metric_k,) if kind == "lgbm" else cfg.tune.metric_k)
    data = make_groups(30, seed=2)
    ranker.fit(data, valid=make_groups(10, seed=3))
    assert np.isfinite(ranker.predict(data)).all()
