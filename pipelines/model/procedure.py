"""The fit procedure, the same for the test protocol, the item-cold protocol and the production model.

Given a frame of interactions (everything the model may learn from):
  A = each user's last share of the frame (validation labels), history A.train
  B = each user's last share of A.train (the ranker's training labels), history B.train
  1. tune the sources on A (Optuna), and the fusion weights on the new-item validation (hidden items of A)
  2. the ranker learns on level B (a share of established items hidden, so it sees new-looking items),
     early-stops on half of A's users (A1) and is tuned there
  3. the guard: on the other half (A2) the ranker must beat every candidate source alone; if not, the best
     source is published. The new-item guard picks the new-item scorer the same way on the hidden items.
  4. the final ranker is refitted on B and A together; every source is refitted on the whole frame.
Nothing in it looks at anything after the frame.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from fusion.fuse import FUSION_METHODS
from pipelines.model.config import TrainConfig
from pipelines.model.fit_ranker import make_ranker, top_lists, tune_ranker
from pipelines.model.guard import choose
from pipelines.model.levels import Level, SourceParams, fit_level
from pipelines.model.new_items import NEW_DEPTH, NewItemValidation, tune_fusion_weights
from pipelines.model.space import ItemSpace, build_space
from pipelines.model.stages import stage
from pipelines.model.tuning import Budget, SourceValidation, relevant_items, tune_sources
from ranker.evaluation.metrics import evaluate_topk
from ranker.evaluation.splits import HoldoutSplit, holdout_split, sample_items
from ranker.ranking.data import RankingData, concat_ranking_data
from ranker.retrieval.blocks import BlockPlan

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Catalog:
    """What a fit may know besides the interactions: the ids behind row positions, and the item vectors."""

    item_ids: np.ndarray
    tables: dict  # modality -> (item_ids, vectors) as stored
    user_ids: np.ndarray

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)


@dataclass(frozen=True)
class Tuned:
    """What tuning chose, reusable by a later fit on other data (production, item-cold)."""

    sources: SourceParams
    fusion_weights: dict | None
    ranker_params: dict


@dataclass
class Fitted:
    cfg: TrainConfig
    weight_kind: str
    tuned: Tuned
    space: ItemSpace
    level: Level  # every source fitted on the whole frame
    ranker: object
    published: str  # "ranker" or the candidate block published instead (the guard's decision)
    new_item_scorer: str  # "ranker" or a block, among new items (the new-item guard's decision)
    report: dict = field(default_factory=dict)

    def plan(self, k: int, new_items: np.ndarray | None = None) -> BlockPlan:
        new_items = ~self.level.ctx.item_has_history if new_items is None else new_items
        return BlockPlan(self.cfg.candidates.depth, rank_depth=self.cfg.candidates.rank_depth, list_k=k,
                         new_items=new_items, new_depth=NEW_DEPTH)


def candidate_blocks(cfg: TrainConfig) -> list[str]:
    return sorted(name for name, depth in cfg.candidates.depth.items() if depth > 0)


def _levels(frame: pl.DataFrame, catalog: Catalog, cfg: TrainConfig) -> tuple[HoldoutSplit, HoldoutSplit]:
    split = cfg.split
    a = holdout_split(frame, kind=split.kind, share=split.val_share, n_users=catalog.n_users,
                      min_events=split.min_user_events)
    b = holdout_split(a.train, kind=split.kind, share=split.val_share, n_users=catalog.n_users,
                      min_events=split.min_user_events)
    return a, b


def _tune(a: HoldoutSplit, new_val: NewItemValidation, catalog: Catalog, cfg: TrainConfig,
          weight_kind: str, budget: Budget) -> tuple[SourceParams, dict | None, dict]:
    params, records = SourceParams.from_config(cfg, weight_kind), {}
    weights = None
    if not cfg.tune.enabled:
        return params, weights, records
    base_space = build_space(catalog.item_ids, catalog.tables, a.train, cfg, with_index=False)
    validation = SourceValidation(a.train, a.test, a.cutoff_us, n_users=catalog.n_users, n_items=catalog.n_items,
                                  item_vectors=base_space.item_vectors(), weight_kind=weight_kind,
                                  k=cfg.tune.metric_k, threads=cfg.threads)
    params, records = tune_sources(validation, params, trials=cfg.tune.trials, budget=budget, seed=cfg.seed,
                                   studies_after=2)
    takes_weights = FUSION_METHODS[cfg.fusion.method].takes_weights
    if cfg.fusion.tune_weights and takes_weights and len(base_space.aligned.modalities) > 1:
        weights, mapping, records["fusion"] = tune_fusion_weights(new_val, catalog, new_val.history, cfg, budget,
                                                                  weight_kind, params.params["content"]["mapping"])
        params = params.with_source("content", mapping=mapping)
    return params, weights, records


def _ranker_level(split: HoldoutSplit, catalog, space, params, cfg, weight_kind, hidden=None):
    """Level fitted on split.train (``hidden`` items' history removed, yet available), and its ranking data."""
    history = split.train
    if hidden is not None and hidden.size:
        history = history.filter(~pl.col("item_idx").is_in(hidden))
    level = fit_level(history, n_users=catalog.n_users, n_items=catalog.n_items, item_vectors=space.item_vectors(),
                      weight_kind=weight_kind, params=params, cfg=cfg)
    first = _first_us(split.train, catalog.n_items)
    if hidden is not None and hidden.size:
        level.item_first_us[hidden] = first[hidden]  # they exist: they only look new
    users, relevant = relevant_items(history, split.test)
    if len(users) > cfg.ranker.max_train_users:
        keep = np.sort(np.random.default_rng(cfg.seed).choice(len(users), cfg.ranker.max_train_users, replace=False))
        users, relevant = users[keep], [relevant[i] for i in keep]
    plan = BlockPlan(cfg.candidates.depth, rank_depth=cfg.candidates.rank_depth, list_k=max(cfg.eval_ks),
                     new_items=~level.ctx.item_has_history, new_depth=NEW_DEPTH)
    result = level.run(users, plan, split.cutoff_us)
    data = level.features(result.candidates, labels=split.test.select("user_idx", "item_idx"))
    return level, users, relevant, result, data


def _first_us(frame: pl.DataFrame, n_items: int) -> np.ndarray:
    out = np.full(n_items, np.iinfo(np.int64).max, dtype=np.int64)
    first = frame.group_by("item_idx").agg(pl.col("ts").dt.epoch("us").min())
    out[first["item_idx"].to_numpy()] = first["ts"].to_numpy()
    return out


def _halves(users: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Early-stopping users and guard users; a validation too small to halve serves both (and says so)."""
    if len(users) < 20:
        log.warning("only %d validation users: early stopping and the guard share them", len(users))
        return users, users
    order = np.random.default_rng(seed).permutation(len(users))
    half = len(users) // 2
    return np.sort(users[order[:half]]), np.sort(users[order[half:]])


def _rows_of(data: RankingData, users: np.ndarray) -> RankingData:
    starts = data.user_idx[data.group_offsets[:-1]]
    return data.select_groups(np.isin(starts, users))


def guard(ranker, data: RankingData, lists: dict, users: np.ndarray, relevant: list, blocks: list[str],
          n_items: int, k: int) -> tuple[str, dict]:
    """NDCG@k on ``users`` of the ranker and of every candidate block alone (see pipelines.model.guard)."""
    idx, _ = top_lists(users, data.item_idx, data.user_idx, ranker.predict(data), k)
    per_user = {"ranker": evaluate_topk(idx, relevant, ks=(k,), n_items=n_items).per_user[f"ndcg@{k}"]}
    for name in blocks:
        per_user[name] = evaluate_topk(lists[name], relevant, ks=(k,), n_items=n_items).per_user[f"ndcg@{k}"]
    chosen, report = choose(per_user, f"ndcg@{k}")
    return chosen, {"users": int(len(users)), "positives": int(sum(r.size for r in relevant)), **report}


def fit_procedure(frame: pl.DataFrame, catalog: Catalog, cfg: TrainConfig, weight_kind: str, *,
                  tuned: Tuned | None = None, budget: Budget | None = None) -> Fitted:
    started = time.perf_counter()
    budget = budget or Budget(cfg.tune.seconds)
    k = cfg.tune.metric_k
    a, b = _levels(frame, catalog, cfg)
    new_val = NewItemValidation.build(frame, catalog, cfg)
    report: dict = {"levels": {"A_users": int(len(a.test_users)), "B_users": int(len(b.test_users)),
                               "A_label_events": a.test.height, "B_label_events": b.test.height}}
    if tuned is None:
        sources, weights, report["tuning"] = stage("tune", _tune, a, new_val, catalog, cfg, weight_kind, budget)
    else:
        sources, weights = tuned.sources, tuned.fusion_weights
    space = stage("fuse", build_space, catalog.item_ids, catalog.tables, a.train, cfg, weights=weights,
                  with_index=False)
    hidden = sample_items(b.train, share=cfg.ranker.simulated_new_share,
                          min_interactions=cfg.item_cold.min_interactions,
                          seed=cfg.seed)
    _, b_users, _, _, train_data = stage("candidates", _ranker_level, b, catalog, space, sources, cfg, weight_kind,
                                         hidden)
    _, a_users, a_relevant, a_result, a_data = stage("candidates", _ranker_level, a, catalog, space, sources, cfg,
                                                     weight_kind)
    early, held = _halves(a_users, cfg.seed)
    if tuned is None:
        ranker_params, report.setdefault("tuning", {})["ranker"], ranker = stage(
            "fit-ranker", tune_ranker, train_data, _rows_of(a_data, early), cfg, budget)
    else:
        ranker_params = tuned.ranker_params
        ranker = stage("fit-ranker", make_ranker(cfg, ranker_params).fit, train_data, valid=_rows_of(a_data, early))
    held_pos = np.isin(a_users, held)
    held_lists = {name: lists[held_pos] for name, lists in a_result.lists.items()}
    held_relevant = [relevant for relevant, kept in zip(a_relevant, held_pos, strict=True) if kept]
    published, report["guard"] = stage("guard", guard, ranker, _rows_of(a_data, held), held_lists, held,
                                       held_relevant, candidate_blocks(cfg), catalog.n_items, k)
    final_ranker = stage("fit-ranker", make_ranker(cfg, {**ranker_params, **_fixed_length(ranker)}).fit,
                         concat_ranking_data([train_data, a_data]))
    new_item_scorer, report["new_item_guard"] = new_val.pick_scorer(ranker, space, sources, cfg, weight_kind)
    level = stage("fit-sources", fit_level, frame, n_users=catalog.n_users, n_items=catalog.n_items,
                  item_vectors=space.item_vectors(), weight_kind=weight_kind, params=sources, cfg=cfg)
    report["levels"].update({"B_train_users": int(len(b_users)), "B_hidden_items": int(hidden.size),
                             "train_rows": train_data.n_rows, "A1_users": int(len(early)), "A2_users": int(len(held))})
    report["seconds"] = round(time.perf_counter() - started, 2)
    log.info("fit procedure: published %s, new items scored by %s, %.0fs", published, new_item_scorer,
             report["seconds"])
    return Fitted(cfg, weight_kind, Tuned(sources, weights, ranker_params), space, level, final_ranker, published,
                  new_item_scorer, report)


def _fixed_length(ranker) -> dict:
    """The early-stopped length of a fitted ranker, for refitting it without a validation set."""
    if hasattr(ranker, "best_iteration_"):
        return {"n_estimators": max(1, int(ranker.best_iteration_))}
    return {"epochs": max(1, int(getattr(ranker, "best_epoch_", 1)))}


def refit_serving(fitted: Fitted, frame: pl.DataFrame, catalog: Catalog) -> Fitted:
    """The same model (tuned values, ranker, decisions) with every source refitted on ``frame``.

    The production model: its ranker and its guard decisions are exactly the ones the test protocol scored.
    """
    level = stage("fit-sources", fit_level, frame, n_users=catalog.n_users, n_items=catalog.n_items,
                  item_vectors=fitted.space.item_vectors(), weight_kind=fitted.weight_kind,
                  params=fitted.tuned.sources, cfg=fitted.cfg)
    return Fitted(fitted.cfg, fitted.weight_kind, fitted.tuned, fitted.space, level, fitted.ranker, fitted.published,
                  fitted.new_item_scorer, fitted.report)
