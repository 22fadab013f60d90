"""The two evaluation protocols. Each runs the whole fit procedure on its own training part only.

temporal:   each user's last `test_share` of events is the test (`split.kind = "per_user"`), or the events
            after one global cutoff (`"global"`). Candidates at a user's cutoff are the items available then
            (first event before it); features are read at the user's own time. The sources are fitted on the
            training part, which for the per-user split holds other users' later events: the usual convention
            of leave-last-out evaluation, and the situation of a model refitted every night.
item-cold:  a seeded share of established items loses every interaction; users rank those items among
            themselves (the new-item scorer), and all items (the published lists, exposure policy included).
"""

from __future__ import annotations

import logging
import time

import numpy as np
import polars as pl

from pipelines.evaluate import BASELINES, best_content, paired, reliability, score_lists, summaries
from pipelines.new_items import NEW_DEPTH
from pipelines.procedure import Catalog, Fitted, Tuned, fit_procedure
from pipelines.recommend import new_item_ranking, ranked, recommend
from pipelines.train_config import TrainConfig
from pipelines.tuning import Budget, relevant_items
from ranker.blocks import BlockPlan
from ranker.splits import SplitError, holdout_split, item_cold_split

log = logging.getLogger(__name__)
EXTRA_BLOCKS = ("ease_recent", "knn_recent", "seq", "content_recent")


def _popularity(frame: pl.DataFrame, n_items: int) -> np.ndarray:
    return np.bincount(frame["item_idx"].to_numpy(), minlength=n_items).astype(np.float64)


def temporal_protocol(interactions: pl.DataFrame, catalog: Catalog, cfg: TrainConfig, weight_kind: str,
                      budget: Budget) -> tuple[dict, Fitted]:
    started = time.perf_counter()
    split = holdout_split(interactions, kind=cfg.split.kind, share=cfg.split.test_share, n_users=catalog.n_users,
                          min_events=cfg.split.min_user_events)
    users, relevant = relevant_items(split.train, split.test)
    if len(users) == 0:
        raise SplitError("the test split leaves no user with history before their cutoff. Fix: lower "
                         f"train.split.test_share (now {cfg.split.test_share}) or provide a longer log")
    fitted = fit_procedure(split.train, catalog, cfg, weight_kind, budget=budget)
    k = max(cfg.eval_ks)
    result = fitted.level.run(users, fitted.plan(k), split.cutoff_us)
    lists = {"full": ranked(fitted, result, users, k, "ranker")[0]}
    if fitted.published != "ranker":
        lists["published"] = recommend(fitted, result, users, k).idx
    lists.update({name: result.lists[block] for name, block in BASELINES.items()})
    lists.update({f"content_{m}": result.lists[f"content_{m}"] for m in fitted.space.aligned.modalities})
    lists.update({name: result.lists[name] for name in EXTRA_BLOCKS if name in result.lists})
    results = score_lists(lists, relevant, ks=cfg.eval_ks, n_items=catalog.n_items, item_vectors=fitted.space.fused,
                          popularity=_popularity(split.train, catalog.n_items))
    against = ["als", "ease", "item_knn", "popularity", best_content(results)]
    out = {"split": split.kind, "test_share": cfg.split.test_share, "test_users": int(len(users)),
           "test_positives": int(sum(r.size for r in relevant)), "table": summaries(results, relevant),
           "paired": paired(results, "full", against),
           "reliability": reliability("temporal protocol", len(users), cfg.eval.min_users),
           "procedure": fitted.report, "published": fitted.published}
    if fitted.published != "ranker":  # the published source against the others (not against itself)
        same = [name for name, block in BASELINES.items() if block == fitted.published]
        out["paired"].update(paired(results, "published", [n for n in against if n not in same]))
    out["seconds"] = round(time.perf_counter() - started, 2)
    return out, fitted


def item_cold_protocol(interactions: pl.DataFrame, catalog: Catalog, cfg: TrainConfig, weight_kind: str,
                       tuned: Tuned) -> dict:
    started = time.perf_counter()
    split = item_cold_split(interactions, share=cfg.item_cold.share, min_interactions=cfg.item_cold.min_interactions,
                            seed=cfg.seed)
    users, relevant = relevant_items(split.train, split.test)
    if len(users) == 0:
        raise SplitError("the item-cold split leaves no user with both held-out items and other history. Fix: "
                         "lower train.item_cold.min_interactions or set train.item_cold.enabled = false.")
    fitted = fit_procedure(split.train, catalog, cfg, weight_kind, tuned=tuned, budget=Budget(0))
    cold = np.zeros(catalog.n_items, dtype=bool)
    cold[split.cold_item_idx] = True
    k = max(cfg.eval_ks)
    held_out = _held_out_lists(fitted, users, cold, k)
    result = fitted.level.run(users, fitted.plan(k))
    published = recommend(fitted, result, users, k)
    all_items = {"full": published.idx, **{name: result.lists[block] for name, block in BASELINES.items()}}
    popularity = _popularity(split.train, catalog.n_items)
    held = score_lists(held_out, relevant, ks=cfg.eval_ks, n_items=catalog.n_items, popularity=popularity)
    every = score_lists(all_items, relevant, ks=cfg.eval_ks, n_items=catalog.n_items, popularity=popularity)
    return {"cold_items": int(cold.sum()), "test_users": int(len(users)),
            "test_positives": int(sum(r.size for r in relevant)), "new_item_scorer": fitted.new_item_scorer,
            "held_out": {"table": summaries(held, relevant),
                         "paired": paired(held, "full", [name for name in (best_content(held), "als_content_map")
                                                         if name != _held_out_name(fitted.new_item_scorer)])},
            "all_items": {"table": summaries(every, relevant), "paired": paired(every, "full", ["content", "als"]),
                          "new_item_coverage": _coverage(published.idx, cold, cfg.eval_ks),
                          "exposure_positions": list(cfg.new_items.positions)},
            "reliability": reliability("item-cold protocol", len(users), cfg.eval.min_users),
            "procedure": {key: fitted.report[key] for key in ("levels", "guard", "new_item_guard") if key in fitted.report},
            "seconds": round(time.perf_counter() - started, 2)}


def _held_out_lists(fitted: Fitted, users: np.ndarray, cold: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Rankings of the held-out items only: the full model (its new-item scorer) and content-only models."""
    plan = BlockPlan({}, rank_depth=fitted.cfg.candidates.rank_depth, list_k=k, new_items=cold, new_depth=NEW_DEPTH)
    result = fitted.level.run(users, plan)
    out = {"full": new_item_ranking(fitted, result, users, cold, k)[0], "als_content_map": result.lists["new/als"]}
    out.update({name[4:]: lists for name, lists in result.lists.items()
                if name.startswith("new/content")})
    return out


def _held_out_name(scorer: str) -> str:
    """The held-out table's name for a new-item scorer (the full model's row repeats it)."""
    return "als_content_map" if scorer == "als" else scorer


def _coverage(lists: np.ndarray, cold: np.ndarray, ks) -> dict:
    """Share of held-out items shown to anyone in the first k positions, and of lists showing one."""
    out = {}
    for k in ks:
        top = lists[:, :k]
        shown = np.unique(top[top >= 0])
        out[f"items@{k}"] = float(cold[shown].sum() / max(cold.sum(), 1))
        out[f"lists@{k}"] = float(np.mean(np.any(np.where(top >= 0, cold[np.clip(top, 0, None)], False), axis=1)))
    return out
