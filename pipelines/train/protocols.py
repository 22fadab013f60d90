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

from pipelines.model.config import TrainConfig
from pipelines.model.procedure import Catalog, Tuned
from pipelines.model.recommender import Recommender
from pipelines.model.tuning import Budget, relevant_items
from pipelines.train.evaluate import BASELINES, best_content, paired, reliability, score_lists, summaries
from ranker.evaluation.splits import SplitError, holdout_split, item_cold_split

log = logging.getLogger(__name__)
EXTRA_BLOCKS = ("ease_recent", "knn_recent", "seq", "content_recent")


def capped(users: np.ndarray, relevant: list[np.ndarray], max_users: int | None, seed: int, name: str):
    """A seeded sample of at most ``max_users`` test users (all of them when unset or fewer), and the count
    sampled from, so that the report can say "n of N users"."""
    if max_users is None or len(users) <= max_users:
        return users, relevant, len(users)
    keep = np.sort(np.random.default_rng(seed).choice(len(users), max_users, replace=False))
    log.info("%s: evaluating a seeded sample of %d of %d test users (train.eval.max_users)", name, max_users,
             len(users))
    return users[keep], [relevant[i] for i in keep], len(users)


def _popularity(frame: pl.DataFrame, n_items: int) -> np.ndarray:
    return np.bincount(frame["item_idx"].to_numpy(), minlength=n_items).astype(np.float64)


def temporal_protocol(interactions: pl.DataFrame, catalog: Catalog, cfg: TrainConfig, weight_kind: str,
                      budget: Budget) -> tuple[dict, Recommender]:
    started = time.perf_counter()
    split = holdout_split(interactions, kind=cfg.split.kind, share=cfg.split.test_share, n_users=catalog.n_users,
                          min_events=cfg.split.min_user_events)
    users, relevant = relevant_items(split.train, split.test)
    if len(users) == 0:
        raise SplitError("the test split leaves no user with history before their cutoff. Fix: lower "
                         f"train.split.test_share (now {cfg.split.test_share}) or provide a longer log")
    users, relevant, eligible = capped(users, relevant, cfg.eval.max_users, cfg.seed, "temporal protocol")
    recommender = Recommender.fit(split.train, catalog, cfg, weight_kind, budget=budget)
    fitted = recommender.model
    everything = recommender.candidate_lists(users, max(cfg.eval_ks), split.cutoff_us)
    lists = {"full": everything["full"]}
    if fitted.published != "ranker":
        lists["published"] = everything["published"]
    lists.update({name: everything[block] for name, block in BASELINES.items()})
    lists.update({f"content_{m}": everything[f"content_{m}"] for m in fitted.space.aligned.modalities})
    lists.update({name: everything[name] for name in EXTRA_BLOCKS if name in everything})
    results = score_lists(lists, relevant, ks=cfg.eval_ks, n_items=catalog.n_items, item_vectors=fitted.space.fused,
                          popularity=_popularity(split.train, catalog.n_items))
    against = ["als", "ease", "item_knn", "popularity", best_content(results)]
    out = {"split": split.kind, "test_share": cfg.split.test_share, "test_users": int(len(users)),
           "eligible_users": int(eligible),
           "test_positives": int(sum(r.size for r in relevant)), "table": summaries(results, relevant),
           "paired": paired(results, "full", against),
           "reliability": reliability("temporal protocol", len(users), cfg.eval.min_users),
           "procedure": fitted.report, "published": fitted.published}
    if fitted.published != "ranker":  # the published source against the others (not against itself)
        same = [name for name, block in BASELINES.items() if block == fitted.published]
        out["paired"].update(paired(results, "published", [n for n in against if n not in same]))
    out["seconds"] = round(time.perf_counter() - started, 2)
    return out, recommender


def item_cold_protocol(interactions: pl.DataFrame, catalog: Catalog, cfg: TrainConfig, weight_kind: str,
                       tuned: Tuned) -> dict:
    started = time.perf_counter()
    split = item_cold_split(interactions, share=cfg.item_cold.share, min_interactions=cfg.item_cold.min_interactions,
                            seed=cfg.seed)
    users, relevant = relevant_items(split.train, split.test)
    if len(users) == 0:
        raise SplitError("the item-cold split leaves no user with both held-out items and other history. Fix: "
                         "lower train.item_cold.min_interactions or set train.item_cold.enabled = false.")
    users, relevant, eligible = capped(users, relevant, cfg.eval.max_users, cfg.seed, "item-cold protocol")
    recommender = Recommender.fit(split.train, catalog, cfg, weight_kind, tuned=tuned, budget=Budget(0))
    fitted = recommender.model
    cold = np.zeros(catalog.n_items, dtype=bool)
    cold[split.cold_item_idx] = True
    k = max(cfg.eval_ks)
    new_lists = recommender.new_item_lists(users, cold, k)
    held_out = {"full": new_lists["full"], "als_content_map": new_lists["new/als"]}
    held_out.update({name[4:]: lists for name, lists in new_lists.items() if name.startswith("new/content")})
    everything = recommender.candidate_lists(users, k)
    published = everything["published"]
    all_items = {"full": published, **{name: everything[block] for name, block in BASELINES.items()}}
    popularity = _popularity(split.train, catalog.n_items)
    held = score_lists(held_out, relevant, ks=cfg.eval_ks, n_items=catalog.n_items, popularity=popularity)
    every = score_lists(all_items, relevant, ks=cfg.eval_ks, n_items=catalog.n_items, popularity=popularity)
    return {"cold_items": int(cold.sum()), "test_users": int(len(users)), "eligible_users": int(eligible),
            "test_positives": int(sum(r.size for r in relevant)), "new_item_scorer": fitted.new_item_scorer,
            "held_out": {"table": summaries(held, relevant),
                         "paired": paired(held, "full", [name for name in (best_content(held), "als_content_map")
                                                         if name != _held_out_name(fitted.new_item_scorer)])},
            "all_items": {"table": summaries(every, relevant), "paired": paired(every, "full", ["content", "als"]),
                          "new_item_coverage": _coverage(published, cold, cfg.eval_ks),
                          "exposure_positions": list(cfg.new_items.positions)},
            "reliability": reliability("item-cold protocol", len(users), cfg.eval.min_users),
            "procedure": {key: fitted.report[key] for key in ("levels", "guard", "new_item_guard")
                          if key in fitted.report},
            "seconds": round(time.perf_counter() - started, 2)}


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
