"""The learned ranker: built from the config, tuned with Optuna on validation groups, and its top-k lists."""

from __future__ import annotations

import inspect
import logging

import numpy as np
import optuna
import polars as pl

from pipelines.model.config import TrainConfig
from pipelines.model.tuning import Budget, run_study, space_keys
from ranker.ranking.data import RankingData, ndcg_at_k
from ranker.ranking.registry import RANKERS

log = logging.getLogger(__name__)
# Starting points measured on the validation split of ml-latest-small (NDCG@20 of the ranker on held-out
# validation users): small-leaved, subsampled trees generalise across levels better than deep ones.
PIPELINE_DEFAULTS = {"lgbm": {"num_leaves": 15, "min_child_samples": 50, "learning_rate": 0.05,
                              "subsample": 0.8, "colsample_bytree": 0.8, "n_estimators": 600,
                              "early_stopping_rounds": 30},
                     "mlp": {}}
SEARCH_SPACES = {
    "lgbm": lambda t: {"num_leaves": t.suggest_int("num_leaves", 7, 127, log=True),
                       "min_child_samples": t.suggest_int("min_child_samples", 10, 400, log=True),
                       "learning_rate": t.suggest_float("learning_rate", 0.02, 0.2, log=True),
                       "subsample": t.suggest_float("subsample", 0.5, 1.0),
                       "colsample_bytree": t.suggest_float("colsample_bytree", 0.4, 1.0),
                       "reg_lambda": t.suggest_float("reg_lambda", 1e-3, 30.0, log=True)},
    "mlp": lambda t: {"lr": t.suggest_float("lr", 1e-4, 1e-2, log=True),
                      "weight_decay": t.suggest_float("weight_decay", 1e-6, 1e-3, log=True),
                      "loss": t.suggest_categorical("loss", ["listwise", "pairwise"])},
}


def make_ranker(cfg: TrainConfig, overrides: dict | None = None):
    """The configured ranker; the run's settings (metric cut-off, threads) go to the rankers that take them."""
    cls = RANKERS[cfg.ranker.kind]
    accepted = inspect.signature(cls.__init__).parameters
    # eval_at as the ranker takes it: LightGBM a tuple of cut-offs, the MLP one int
    eval_at = (cfg.tune.metric_k,) if isinstance(getattr(accepted.get("eval_at"), "default", None), tuple) \
        else cfg.tune.metric_k
    run_settings = {name: value for name, value in {"eval_at": eval_at, "n_jobs": cfg.threads}.items()
                    if name in accepted}
    return cls(**{**run_settings, "seed": cfg.seed, **PIPELINE_DEFAULTS.get(cfg.ranker.kind, {}),
                  **cfg.ranker.params, **(overrides or {})})


def validation_ndcg(ranker, data: RankingData, k: int) -> float:
    return ndcg_at_k(ranker.predict(data), data.labels, data.group_sizes, k)


def tune_ranker(train: RankingData, valid: RankingData, cfg: TrainConfig, budget: Budget) -> tuple[dict, dict, object]:
    """Best ranker parameters by NDCG@metric_k on ``valid`` (early stopping on it too), the study's record, and
    the best trial's fitted ranker; with tuning off, the configured parameters alone."""
    space = SEARCH_SPACES[cfg.ranker.kind]
    defaults = {key: value for key, value in {**PIPELINE_DEFAULTS[cfg.ranker.kind], **cfg.ranker.params}.items()
                if key in space_keys(space)}
    k = cfg.tune.metric_k
    best_fit = {"score": -np.inf, "ranker": None}  # the first trial with the best score, as the study picks it

    def objective(trial: optuna.Trial) -> float:
        ranker = make_ranker(cfg, space(trial)).fit(train, valid=valid)
        trial.set_user_attr("best_iteration", getattr(ranker, "best_iteration_", None))
        score = validation_ndcg(ranker, valid, k)
        if score > best_fit["score"]:
            best_fit.update(score=score, ranker=ranker)
        return score

    trials = cfg.tune.trials if cfg.tune.enabled else 1
    best, record = run_study("ranker", objective, defaults, trials=trials, budget=budget, seed=cfg.seed)
    return best, record, best_fit["ranker"]


def top_lists(users: np.ndarray, item_idx: np.ndarray, row_users: np.ndarray, scores: np.ndarray,
              k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per user in ``users`` (any order), the k best-scoring rows: (idx (n, k) -1 padded, scores -inf padded)."""
    frame = (pl.DataFrame({"user_idx": row_users, "item_idx": item_idx, "score": scores.astype(np.float32)})
             .sort(["user_idx", "score", "item_idx"], descending=[False, True, False])
             .group_by("user_idx", maintain_order=True).head(k)
             .with_columns(rank=pl.int_range(pl.len()).over("user_idx")))
    position = {int(u): p for p, u in enumerate(users)}
    rows = np.array([position.get(int(u), -1) for u in frame["user_idx"].to_numpy()], dtype=np.int64)
    keep = rows >= 0
    idx = np.full((len(users), k), -1, dtype=np.int64)
    out = np.full((len(users), k), -np.inf, dtype=np.float32)
    idx[rows[keep], frame["rank"].to_numpy()[keep]] = frame["item_idx"].to_numpy()[keep]
    out[rows[keep], frame["rank"].to_numpy()[keep]] = frame["score"].to_numpy()[keep]
    return idx, out
