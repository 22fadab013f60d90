"""New items: the validation that chooses how they are scored, and the exposure policy that puts them in lists.

The new-item validation is the item-cold protocol carved from the training frame: a seeded sample of
established items (drawn from past counts, never from who consumes them) loses all its interactions, and the
users who had consumed them rank those items among themselves. The fusion weights are tuned there (content is
what a new item has), and the new-item guard picks the scorer among the ranker and the content-only sources.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import optuna
import polars as pl

from pipelines.model.config import TrainConfig
from pipelines.model.fit_ranker import top_lists
from pipelines.model.guard import choose
from pipelines.model.levels import SourceParams, fit_level
from pipelines.model.space import build_space
from pipelines.model.tuning import Budget, relevant_items, run_study
from ranker.evaluation.metrics import evaluate_topk
from ranker.evaluation.splits import sample_items
from ranker.retrieval.blocks import BlockPlan
from ranker.retrieval.feedback import MAPPINGS, Feedback

log = logging.getLogger(__name__)
NEW_DEPTH = {"content": 100, "content_recent": 50, "als": 100}  # new items proposed per user, by block


@dataclass
class NewItemValidation:
    history: pl.DataFrame  # the validation history without the hidden items
    hidden: np.ndarray  # item_idx
    users: np.ndarray
    relevant: list[np.ndarray]
    n_users: int
    n_items: int
    k: int

    @classmethod
    def build(cls, frame: pl.DataFrame, catalog, cfg: TrainConfig) -> NewItemValidation:
        hidden = sample_items(frame, share=cfg.item_cold.share, min_interactions=cfg.item_cold.min_interactions,
                              seed=cfg.seed + 1, max_items=cfg.new_items.validation_items)
        is_hidden = pl.col("item_idx").is_in(hidden)
        history = frame.filter(~is_hidden)
        users, relevant = relevant_items(history, frame.filter(is_hidden))
        return cls(history, hidden, users, relevant, catalog.n_users, catalog.n_items, cfg.tune.metric_k)

    @property
    def usable(self) -> bool:
        return self.hidden.size >= 2 and len(self.users) > 0

    def mask(self) -> np.ndarray:
        out = np.zeros(self.n_items, dtype=bool)
        out[self.hidden] = True
        return out

    def _ndcg(self, lists: np.ndarray) -> np.ndarray:
        return evaluate_topk(lists, self.relevant, ks=(self.k,), n_items=self.n_items).per_user[f"ndcg@{self.k}"]

    def content_ndcg(self, fused: np.ndarray, feedback: Feedback, mapping: str) -> float:
        """Content-only: the users' profiles (fused vectors of their history) against the hidden items."""
        matrix = feedback.matrix(mapping, (self.n_users, self.n_items))
        profiles = np.asarray(matrix[self.users] @ fused, dtype=np.float32)
        scores = profiles @ fused[self.hidden].T
        order = np.argsort(-scores, axis=1, kind="stable")[:, : self.k]
        lists = np.full((len(self.users), self.k), -1, dtype=np.int64)
        lists[:, : order.shape[1]] = self.hidden[order]
        return float(np.mean(self._ndcg(lists)))

    def pick_scorer(self, ranker, space, sources: SourceParams, cfg: TrainConfig, weight_kind: str) -> tuple[str, dict]:
        """The best scorer of hidden items on validation: the ranker, or a content-only block."""
        if not self.usable:
            return "ranker", {"chosen": "ranker", "reason": "too few hidden items or users to validate"}
        level = fit_level(self.history, n_users=self.n_users, n_items=self.n_items, item_vectors=space.item_vectors(),
                          weight_kind=weight_kind, params=sources, cfg=cfg)
        plan = BlockPlan({}, rank_depth=cfg.candidates.rank_depth, list_k=self.k, new_items=self.mask(),
                         new_depth=NEW_DEPTH)
        result = level.run(self.users, plan)
        data = level.features(result.candidates)
        ranked, _ = top_lists(self.users, data.item_idx, data.user_idx, ranker.predict(data), self.k)
        per_user = {"ranker": self._ndcg(ranked)}
        for name in sorted(result.lists):
            if name.startswith("new/") and (name[4:].startswith("content") or name[4:] == "als"):
                per_user[name[4:]] = self._ndcg(result.lists[name])
        chosen, report = choose(per_user, f"ndcg@{self.k}")
        log.info("new-item guard on %d users x %d hidden items: %s (NDCG@%d %.4f)", len(self.users),
                 self.hidden.size, chosen, self.k, report["table"][chosen][f"ndcg@{self.k}"])
        return chosen, {"users": int(len(self.users)), "hidden_items": int(self.hidden.size),
                        "positives": int(sum(r.size for r in self.relevant)), **report}


def tune_fusion_weights(validation: NewItemValidation, catalog, history: pl.DataFrame, cfg: TrainConfig,
                        budget: Budget, weight_kind: str, mapping: str) -> tuple[dict | None, str, dict]:
    """Modality weights of the fused space, and the feedback mapping of content profiles, that best rank
    hidden items by content alone."""
    if not validation.usable:
        return None, mapping, {"skipped": "too few hidden items or users to validate"}
    feedback = Feedback.from_interactions(validation.history, weight_kind, validation.n_users)
    modalities = [m for m in cfg.modalities if m in catalog.tables]
    defaults = {**{m: float(cfg.fusion.weights.get(m, 1.0 / len(modalities))) for m in modalities},
                "mapping": mapping}

    def objective(trial: optuna.Trial) -> float:
        profile_mapping = trial.suggest_categorical("mapping", list(MAPPINGS[weight_kind]))
        raw = {m: trial.suggest_float(m, 0.0, 1.0) for m in modalities}
        total = sum(raw.values())
        if total <= 0:
            return 0.0
        weights = {m: w / total for m, w in raw.items()}
        space = build_space(catalog.item_ids, catalog.tables, history, cfg, weights=weights, with_index=False)
        return validation.content_ndcg(space.fused, feedback, profile_mapping)

    share = Budget(budget.remaining() / 2)  # the ranker's study comes next
    best, record = run_study("fusion weights", objective, defaults, trials=cfg.tune.trials, budget=share,
                             seed=cfg.seed)
    best_mapping = best.pop("mapping")
    total = sum(best.values()) or 1.0
    return {m: w / total for m, w in best.items()}, best_mapping, record
