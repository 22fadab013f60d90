"""The two evaluation protocols. Each refits fusion, factors and the ranker on its own training data only.

temporal:   train before a global cutoff, test after it (the cold-start slice: test items unseen in train).
item-cold:  a seeded share of items loses all its interactions from training; users rank those held-out
            items (and, as a second figure, all items), so new items can only be reached through content.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import polars as pl

from pipelines.evaluate import (baseline_topks, best_content, full_model_topk, paired, relevant_per_user,
                                score_models, summaries)
from pipelines.fit_ranker import fit_ranker
from pipelines.modeling import build_history, build_space
from pipelines.scoring import candidates
from pipelines.train_config import TrainConfig
from pipelines.tune_als import tune_als
from pipelines.train_data import TrainInputs
from ranker.candidates import dense_topk
from ranker.metrics import evaluate_topk
from ranker.splits import SplitError, item_cold_split, temporal_split

log = logging.getLogger(__name__)


def fit_protocol(inputs: TrainInputs, train: pl.DataFrame, cfg: TrainConfig):
    n_users, als_search = len(inputs.user_ids), None
    if cfg.ranker.search:
        cfg, als_search = tune_als(train, cfg, n_users=n_users, n_items=len(inputs.item_ids))
    space = build_space(inputs.item_ids, inputs.tables, train, cfg)
    refit = None
    if cfg.fusion.method == "gated":  # the fusion learns from interactions: refit it on the ranker's inner history
        refit = lambda rows: build_space(inputs.item_ids, inputs.tables, rows, cfg)  # noqa: E731
    ranker, info = fit_ranker(train, space, cfg, n_users=n_users, refit_space=refit)
    history = build_history(train, space, cfg, n_users=n_users)
    return space, ranker, {**info, "als_search": als_search}, history


def _users_with_history(test: pl.DataFrame, train: pl.DataFrame) -> np.ndarray:
    return np.intersect1d(test["user_idx"].unique().to_numpy(), train["user_idx"].unique().to_numpy())


def temporal_protocol(inputs: TrainInputs, cfg: TrainConfig) -> dict:
    started = time.perf_counter()
    split = temporal_split(inputs.interactions, test_days=cfg.split.test_days, val_days=cfg.split.val_days)
    users = _users_with_history(split.test, split.train)
    if len(users) == 0:
        raise SplitError(f"the cutoff {split.cutoff} leaves no test user with history before it. Fix: raise "
                         f"train.split.test_days (now {cfg.split.test_days}) or check the interactions' ts range.")
    space, ranker, info, history = fit_protocol(inputs, split.train, cfg)
    relevant = relevant_per_user(split.test, history, users)
    k = max(cfg.eval_ks)
    topks = {"full": full_model_topk(ranker, history, space, cfg, users, k), **baseline_topks(history, space, users, k)}
    cold_items = np.flatnonzero(~history.warm_items)
    results = score_models(topks, relevant, history, space, cfg, cold_items)
    return {"cutoff": str(split.cutoff), "test_users": int(len(users)), "cold_test_items": int(cold_items.size),
            "ranker": info, "content_map": history.content_map_report, "table": summaries(results),
            "paired": paired(results, ["als", "popularity", best_content(results)]),
            "seconds": round(time.perf_counter() - started, 2)}


def _held_out_topks(ranker, history, space, cfg, users, cold, k):
    """Rankings restricted to the held-out items: full model, ALS alone, content only."""
    pairs_all = pl.DataFrame({"user_idx": np.repeat(users, len(cold)), "item_idx": np.tile(cold, len(users))},
                             schema={"user_idx": pl.Int64, "item_idx": pl.Int64})
    proposed = candidates(history, space, cfg, users)
    pairs = pairs_all.join(proposed, on=["user_idx", "item_idx"], how="left").sort("user_idx", "item_idx")
    pairs = pairs.with_columns(pl.col("sources").fill_null(pl.lit([], dtype=pl.List(pl.String))))
    out = {"full": full_model_topk(ranker, history, space, cfg, users, k, pairs=pairs)}
    # Plain ALS has no factors for items without interactions (all ties); the content-mapped factors do.
    als = history.als.user_factors_[users] @ history.als.item_factors_[cold].T
    als_mapped = history.als.user_factors_[users] @ history.item_factors[cold].T
    content = history.profiles["fused"][users] @ space.fused[cold].T
    for name, scores in (("als", als), ("als_content_map", als_mapped), ("content", content)):
        idx, _ = dense_topk(scores, min(k, len(cold)))
        idx = np.pad(idx, ((0, 0), (0, k - idx.shape[1])), constant_values=-1)  # fewer held-out items than k
        out[name] = np.where(idx >= 0, cold[np.clip(idx, 0, None)], -1)
    return out


def item_cold_protocol(inputs: TrainInputs, cfg: TrainConfig) -> dict:
    started = time.perf_counter()
    split = item_cold_split(inputs.interactions, share=cfg.item_cold.share,
                            min_interactions=cfg.item_cold.min_interactions, seed=cfg.seed)
    users = _users_with_history(split.test, split.train)
    if len(users) == 0:
        raise SplitError("the item-cold split leaves no user with both held-out items and other history. Fix: "
                         "lower train.item_cold.min_interactions or set train.item_cold.enabled = false.")
    space, ranker, info, history = fit_protocol(inputs, split.train, cfg)
    cold = np.sort(split.cold_item_idx)
    relevant = relevant_per_user(split.test, history, users)
    k = max(cfg.eval_ks)
    popularity = history.item_stats.sort("item_idx")["pop_all"].to_numpy()
    held_out = {name: evaluate_topk(idx, relevant, ks=cfg.eval_ks, n_items=space.n_items, item_popularity=popularity)
                for name, idx in _held_out_topks(ranker, history, space, cfg, users, cold, k).items()}
    all_topks = {"full": full_model_topk(ranker, history, space, cfg, users, k), **baseline_topks(history, space, users, k)}
    all_items = score_models({n: all_topks[n] for n in ("full", "als", "content", "popularity")}, relevant, history,
                             space, cfg, None)
    return {"cold_items": int(cold.size), "test_users": int(len(users)), "ranker": info,
            "held_out": {"table": summaries(held_out), "paired": paired(held_out, ["als", "als_content_map", "content"])},
            "all_items": {"table": summaries(all_items), "paired": paired(all_items, ["als", "content"])},
            "seconds": round(time.perf_counter() - started, 2)}
