"""Fit the chosen ranker on a history: features before an inner cutoff, labels from the window after it."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import timedelta

import numpy as np
import polars as pl

from pipelines.modeling import ItemSpace, build_history
from pipelines.scoring import candidates, features
from pipelines.train_config import TrainConfig
from ranker.data import RankingData
from ranker.lgbm import LGBMRankerModel
from ranker.mlp import MLPRankerModel
from ranker.search import LGBM_DEFAULT_GRID, MLP_DEFAULT_GRID, search_hyperparameters
from ranker.splits import SplitError

log = logging.getLogger(__name__)
RANKERS = {"lgbm": LGBMRankerModel, "mlp": MLPRankerModel}
# Small trees: a nightly catalog's label window holds few query groups, and deep trees overfit them
# (demo, temporal NDCG@10: 0.144 with 31 leaves, 0.177 with 7 leaves / 50 samples per leaf).
PIPELINE_DEFAULTS = {"lgbm": {"num_leaves": 7, "min_child_samples": 50}, "mlp": {}}


def make_ranker(cfg: TrainConfig, overrides: dict | None = None):
    params = {"seed": cfg.seed, **PIPELINE_DEFAULTS[cfg.ranker.kind], **cfg.ranker.params, **(overrides or {})}
    return RANKERS[cfg.ranker.kind](**params)


def label_window(interactions: pl.DataFrame, val_days: float) -> tuple[pl.DataFrame, pl.DataFrame]:
    cutoff = interactions["ts"].max() - timedelta(days=val_days)
    history = interactions.filter(pl.col("ts") < cutoff)
    window = interactions.filter(pl.col("ts") >= cutoff)
    if history.height == 0 or window.height == 0:
        raise SplitError(f"the ranker's label window (last {val_days} days before the cutoff) leaves "
                         f"{history.height} history and {window.height} label interactions. Fix: lower "
                         "train.split.val_days or provide a longer interaction log.")
    return history, window


def hide_items(history: pl.DataFrame, window: pl.DataFrame, share: float, seed: int) -> tuple[pl.DataFrame, np.ndarray]:
    """Drop the history of a seeded share of the label window's items, so they look new when features are built.

    Without it, the truly new items of a catalog never carry a positive label in training (they appear only
    after the cutoff), and the ranker learns that "no interactions yet" means "never recommend". Hidden items
    are drawn from the label window because they imitate new items that get consumed after launch, the ones a
    test window holds. Measured on the demo (temporal NDCG@10 / cold-start Recall@20): drawn from the window
    0.173 / 0.346; half from the window, half from the rest 0.180 / 0.000; from all history 0.173 / 0.010.
    """
    candidates = np.intersect1d(window["item_idx"].unique().to_numpy(), history["item_idx"].unique().to_numpy())
    n_hidden = int(round(share * len(candidates)))
    if n_hidden == 0:
        return history, np.zeros(0, dtype=np.int64)
    hidden = np.sort(np.random.default_rng(seed).choice(candidates, n_hidden, replace=False))
    return history.filter(~pl.col("item_idx").is_in(hidden)), hidden


def _split_groups(data: RankingData, seed: int, share: float = 0.2) -> tuple[RankingData, RankingData | None]:
    groups = np.flatnonzero(data.groups_with_positive())
    if len(groups) < 10:
        return data, None
    rng = np.random.default_rng(seed)
    groups = rng.permutation(groups)
    n_valid = max(1, int(len(groups) * share))
    return data.select_groups(np.sort(groups[n_valid:])), data.select_groups(np.sort(groups[:n_valid]))


def candidate_recall(cands: pl.DataFrame, labels: pl.DataFrame) -> float:
    """Share of label pairs that any candidate source proposed: the ceiling of what the ranker can reach."""
    if labels.height == 0:
        return float("nan")
    hit = labels.join(cands.select("user_idx", "item_idx"), on=["user_idx", "item_idx"], how="semi")
    return hit.height / labels.height


def fit_ranker(interactions: pl.DataFrame, space: ItemSpace, cfg: TrainConfig, *, n_users: int,
               refit_space: Callable[[pl.DataFrame], ItemSpace] | None = None):
    """`refit_space` rebuilds the item space from the inner history when the fusion learns from interactions
    (gated), so the training examples' content features never saw their own labels."""
    started = time.perf_counter()
    history_rows, window = label_window(interactions, cfg.split.val_days)
    history_rows, hidden = hide_items(history_rows, window, cfg.ranker.simulated_new_share, cfg.seed)
    if refit_space is not None:
        space = refit_space(history_rows)
    history = build_history(history_rows, space, cfg, n_users=n_users)
    labels = window.select("user_idx", "item_idx").unique().join(
        history_rows.select("user_idx", "item_idx").unique(), on=["user_idx", "item_idx"], how="anti")
    users = np.intersect1d(labels["user_idx"].unique().to_numpy(), history_rows["user_idx"].unique().to_numpy())
    if len(users) > cfg.ranker.max_train_users:
        users = np.sort(np.random.default_rng(cfg.seed).choice(users, cfg.ranker.max_train_users, replace=False))
    labels = labels.filter(pl.col("user_idx").is_in(users))
    cands = candidates(history, space, cfg, users)
    data = features(history, space, cands, labels)
    train, valid = _split_groups(data, cfg.seed)
    search = None
    if cfg.ranker.search and valid is not None:
        search = search_hyperparameters(lambda p: make_ranker(cfg, p), {"lgbm": LGBM_DEFAULT_GRID, "mlp": MLP_DEFAULT_GRID}[cfg.ranker.kind], train=train,
                                        valid=valid, budget=cfg.ranker.search_budget, seed=cfg.seed)
        ranker = make_ranker(cfg, search.best_params).fit(train, valid=valid)
    else:
        ranker = make_ranker(cfg).fit(train, valid=valid)
    info = {"train_users": int(len(users)), "simulated_new_items": int(len(hidden)), "train_rows": int(data.n_rows), "label_pairs": labels.height,
            "candidate_recall": round(candidate_recall(cands, labels), 4), "seconds": round(time.perf_counter() - started, 2),
            "search": None if search is None else search.to_dict()}
    log.info("ranker %s fitted on %d users, candidate recall %.3f", cfg.ranker.kind, len(users), info["candidate_recall"])
    return ranker, info
