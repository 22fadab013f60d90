"""A small search over ALS hyperparameters on the validation window (run when the ranker's search is on)."""

from __future__ import annotations

import logging

import numpy as np
import polars as pl

from pipelines.fit_ranker import label_window
from pipelines.train_config import TrainConfig
from ranker.covisit import seen_matrix
from ranker.factors import ALSFactors
from ranker.metrics import evaluate_topk
from ranker.search import sample_grid

log = logging.getLogger(__name__)
ALS_GRID = {"factors": (16, 32, 64), "regularization": (0.01, 0.05, 0.2), "alpha": (5.0, 20.0, 40.0)}


def tune_als(train: pl.DataFrame, cfg: TrainConfig, *, n_users: int, n_items: int) -> tuple[TrainConfig, dict]:
    """Best ALS parameters by Recall@20 of ALS alone on the last `val_days` of `train`; returns the updated config."""
    history, window = label_window(train, cfg.split.val_days)
    seen = seen_matrix(history, n_users, n_items)
    users = np.intersect1d(window["user_idx"].unique().to_numpy(), history["user_idx"].unique().to_numpy())
    grouped = dict(window.group_by("user_idx").agg(pl.col("item_idx").unique()).iter_rows())
    relevant = [np.setdiff1d(np.asarray(grouped[int(u)]), seen[int(u)].indices) for u in users]
    trials = []
    for params in sample_grid(ALS_GRID, budget=cfg.ranker.search_budget, seed=cfg.seed):
        als = ALSFactors(**{**cfg.als.model_dump(exclude={"content_map"}), **params, "seed": cfg.seed})
        idx, _ = als.fit(history, n_users=n_users, n_items=n_items).recommend(users, 20, exclude=seen)
        score = evaluate_topk(idx, relevant, ks=(20,), n_items=n_items).summary()["recall@20"]
        trials.append({"params": params, "recall@20": score})
    best = max(trials, key=lambda t: t["recall@20"])
    log.info("ALS search: best %s (recall@20 %.4f) of %d trials", best["params"], best["recall@20"], len(trials))
    tuned = cfg.model_copy(update={"als": cfg.als.model_copy(update=best["params"])})
    return tuned, {"best_params": best["params"], "trials": trials}
