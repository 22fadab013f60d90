"""The one object a run publishes: everything a trained model needs, behind ids the catalog and logs use.

    rec = Recommender.fit(interactions, catalog, cfg, weight_kind)   # the whole procedure (tuning, guard, ...)
    rec.save(run_dir); rec = Recommender.load("store/demo/latest")
    item_ids, scores = rec.recommend(["u1", "u2"], k=10)      # (n_users, k) arrays, implicit-style
    rec.similar_items(["i7"], k=5); rec.recommend_new_items(["u1"], k=3)

The evaluation protocols fit one on their training part and score its lists; the production model is the
protocol's model with every source refitted on all interactions (``refit``). Known users with history get
the published model's list (the ranker, or the source the guard published), with the new-item exposure
policy; unknown users, and users whose history names no catalog item, get the popularity list. Items with
vectors but no interactions are reached through content.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from fusion.align import AlignedBlocks
from fusion.fuse import load_fusion
from pipelines.errors import PipelineError
from pipelines.model.config import TrainConfig
from pipelines.model.levels import SourceParams, load_level, save_level
from pipelines.model.lists import Lists, new_item_ranking, ranked, recommend
from pipelines.model.new_items import NEW_DEPTH
from pipelines.model.procedure import Catalog, Fitted, Tuned, fit_procedure, refit_serving
from pipelines.model.space import ItemSpace
from pipelines.model.tuning import Budget
from ranker.ranking.registry import RANKERS
from ranker.retrieval.blocks import BlockPlan
from ranker.retrieval.index import ItemIndex

FORMAT_VERSION = 1


class RecommenderError(PipelineError, ValueError):
    """A folder that does not hold a saved Recommender, or a request it cannot answer; the message says why."""


@dataclass
class Recommender:
    model: Fitted
    item_ids: np.ndarray  # item_idx -> item_id
    user_ids: np.ndarray  # user_idx -> user_id
    _index: ItemIndex | None = None
    user_chunk: int = 4096  # users scored together when answering many (memory ~ chunk x candidates x features)

    @classmethod
    def fit(cls, interactions: pl.DataFrame, catalog: Catalog, cfg: TrainConfig, weight_kind: str, *,
            tuned: Tuned | None = None, budget: Budget | None = None) -> Recommender:
        """The whole fit procedure on ``interactions`` (row positions into ``catalog``); see procedure.py."""
        model = fit_procedure(interactions, catalog, cfg, weight_kind, tuned=tuned, budget=budget)
        return cls(model, np.asarray(catalog.item_ids, dtype=object), np.asarray(catalog.user_ids, dtype=object))

    def refit(self, interactions: pl.DataFrame, catalog: Catalog) -> Recommender:
        """The same model (tuned values, ranker, guard decisions) with every source refitted on ``interactions``."""
        return Recommender(refit_serving(self.model, interactions, catalog), self.item_ids, self.user_ids)

    @property
    def index(self) -> ItemIndex:
        """The FAISS index over the fused item vectors, built when first needed."""
        if self._index is None:
            self._index = ItemIndex.build(self.model.space.fused, kind="auto", seed=self.model.cfg.seed)
        return self._index

    # --- what the protocols score -----------------------------------------------------------------------------
    def candidate_lists(self, users: np.ndarray, k: int, cutoff_us: np.ndarray | None = None,
                        ) -> dict[str, np.ndarray]:
        """Item-position lists of user positions ``users`` at their own ``cutoff_us``: "full" (the ranker),
        "published" (with the exposure policy) and every candidate block alone; in user chunks."""
        return self._chunked(users, lambda chunk: self._candidate_lists(chunk, k, cutoff_us))

    def _candidate_lists(self, users: np.ndarray, k: int, cutoff_us: np.ndarray | None) -> dict[str, np.ndarray]:
        result = self.model.level.run(users, self.model.plan(k), cutoff_us)
        lists = dict(result.lists)
        full = ranked(self.model, result, users, k, "ranker")
        lists["full"] = full[0]
        reuse = full if self.model.published == "ranker" else None
        lists["published"] = recommend(self.model, result, users, k, ranked_lists=reuse).idx
        return lists

    def new_item_lists(self, users: np.ndarray, new_items: np.ndarray, k: int) -> dict[str, np.ndarray]:
        """Rankings of ``new_items`` only: "full" (the new-item scorer the guard chose) and each content scorer;
        in user chunks."""
        plan = BlockPlan({}, rank_depth=self.model.cfg.candidates.rank_depth, list_k=k, new_items=new_items,
                         new_depth=NEW_DEPTH)

        def chunk_lists(chunk: np.ndarray) -> dict[str, np.ndarray]:
            result = self.model.level.run(chunk, plan)
            out = {"full": new_item_ranking(self.model, result, chunk, new_items, k)[0]}
            out.update({name: lists for name, lists in result.lists.items() if name.startswith("new/")})
            return out

        return self._chunked(users, chunk_lists)

    def _chunked(self, users: np.ndarray, lists_of) -> dict[str, np.ndarray]:
        """``lists_of(chunk) -> {name: (n, k) lists}`` over user chunks, rows stacked in ``users``' order."""
        users = np.asarray(users, dtype=np.int64)
        parts = [lists_of(users[start : start + self.user_chunk]) for start in range(0, len(users), self.user_chunk)]
        if not parts:
            return {}
        return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}

    # --- answering ---------------------------------------------------------------------------------------------
    @staticmethod
    def _positions(ids, known: np.ndarray) -> np.ndarray:
        lookup = {value: i for i, value in enumerate(known.tolist())}
        return np.array([lookup.get(str(i), -1) for i in ids], dtype=np.int64)

    def lists(self, users: np.ndarray, k: int, *, exclude_seen: bool = True) -> Lists:
        """The published lists of user positions ``users`` (-1 or no history: the popularity fallback)."""
        users = np.asarray(users, dtype=np.int64)
        has_history = np.zeros(len(users), dtype=bool)
        valid = users >= 0
        has_history[valid] = np.diff(self.model.level.seen.indptr)[users[valid]] > 0
        idx = np.full((len(users), k), -1, dtype=np.int64)
        scores = np.full((len(users), k), -np.inf, dtype=np.float32)
        source = np.full((len(users), k), "", dtype=object)
        warm = np.flatnonzero(has_history)
        # In user chunks: candidates and features of one chunk at a time bound the memory whatever the user count
        for start in range(0, warm.size, self.user_chunk):
            rows = warm[start : start + self.user_chunk]
            result = self.model.level.run(users[rows], self.model.plan(k), exclude_seen=exclude_seen)
            lists = recommend(self.model, result, users[rows], k)
            idx[rows], scores[rows], source[rows] = lists.idx, lists.scores, lists.source
        cold = np.flatnonzero(~has_history)
        if cold.size:
            popularity = self.model.level.sources["pop"].popularity
            top = np.lexsort((np.arange(len(popularity)), -popularity))[:k]
            top = top[popularity[top] > 0]
            idx[np.ix_(cold, np.arange(len(top)))] = top
            scores[np.ix_(cold, np.arange(len(top)))] = popularity[top]
            source[np.ix_(cold, np.arange(len(top)))] = "popularity_fallback"
        return Lists(users, idx, scores, source)

    def _ids(self, idx: np.ndarray) -> np.ndarray:
        out = np.full(idx.shape, None, dtype=object)
        out[idx >= 0] = self.item_ids[idx[idx >= 0]]
        return out

    def recommend(self, user_ids, k: int | None = None, *, exclude_seen: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(item_ids (n, k) object, scores (n, k) float32) for ``user_ids``; short lists padded with None / -inf."""
        k = k or self.model.cfg.top_k
        lists = self.lists(self._positions(user_ids, self.user_ids), k, exclude_seen=exclude_seen)
        return self._ids(lists.idx), lists.scores

    def recommend_new_items(self, user_ids, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Only items with vectors but no interactions, ordered by the new-item scorer the guard chose."""
        users = self._positions(user_ids, self.user_ids)
        new = ~self.model.level.ctx.item_has_history
        idx = np.full((len(users), k), -1, dtype=np.int64)
        scores = np.full((len(users), k), -np.inf, dtype=np.float32)
        warm = np.flatnonzero(users >= 0)
        if warm.size and new.any():
            result = self.model.level.run(users[warm], self.model.plan(k, new_items=new))
            idx[warm], scores[warm] = new_item_ranking(self.model, result, users[warm], new, k)
        return self._ids(idx), scores

    def similar_items(self, item_ids, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest other items in the fused space (FAISS); an unknown item or one without vectors gets
        an empty (padded) row."""
        idx, scores = self.similar_positions(self._positions(item_ids, self.item_ids), k)
        return self._ids(idx), scores

    def similar_positions(self, items: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(idx, scores) of the k nearest other items of item positions ``items`` (-1: none), vectorised."""
        fused = self.model.space.fused
        known = items >= 0
        queries = np.where(known[:, None], fused[np.clip(items, 0, None)], 0.0).astype(np.float32)
        found, found_scores = self.index.search(queries, k + 1)
        keep = (found >= 0) & (found != items[:, None]) & (known & (np.abs(queries).sum(axis=1) > 0))[:, None]
        # stable: each row's kept neighbours move to the front, in the index's order
        order = np.argsort(~keep, axis=1, kind="stable")[:, :k]
        taken = np.take_along_axis(keep, order, axis=1)
        idx = np.where(taken, np.take_along_axis(found, order, axis=1), -1)
        scores = np.where(taken, np.take_along_axis(found_scores, order, axis=1), -np.inf).astype(np.float32)
        if idx.shape[1] < k:  # fewer items than k + 1
            pad = k - idx.shape[1]
            idx = np.pad(idx, ((0, 0), (0, pad)), constant_values=-1)
            scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
        return idx, scores

    # --- persistence ------------------------------------------------------------------------------------------
    def save(self, folder: str | os.PathLike) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        model = self.model
        meta = {"format_version": FORMAT_VERSION, "config": model.cfg.model_dump(mode="json"),
                "weight_kind": model.weight_kind, "published": model.published,
                "new_item_scorer": model.new_item_scorer, "modalities": list(model.space.aligned.modalities),
                "tuned": {"sources": model.tuned.sources.params, "half_life": model.tuned.sources.half_life,
                          "fusion_weights": model.tuned.fusion_weights, "ranker": model.tuned.ranker_params}}
        (folder / "recommender.json").write_text(json.dumps(meta, indent=2, default=str))
        pl.DataFrame({"user_idx": np.arange(len(self.user_ids)), "user_id": self.user_ids.astype(str)}).write_parquet(
            folder / "users.parquet")
        pl.DataFrame({"index_pos": np.arange(len(self.item_ids)), "item_id": self.item_ids.astype(str)}).write_parquet(
            folder / "index_items.parquet")
        space = model.space
        with open(folder / "item_vectors.npz", "wb") as handle:
            np.savez(handle, fused=space.fused, mask=space.aligned.mask,
                     **{f"block.{m}": space.aligned.blocks[m] for m in space.aligned.modalities})
        space.fusion.save(folder / "fusion")
        self.index.save(folder / "index.faiss")
        model.ranker.save(folder / "ranker")
        save_level(model.level, folder / "level")

    @classmethod
    def load(cls, folder: str | os.PathLike) -> Recommender:
        folder = Path(folder)
        path = folder / "recommender.json"
        if not path.is_file():
            raise RecommenderError(f"{folder} holds no recommender.json: not a published run. Fix: pass a run "
                                   "folder such as store/<name>/latest (after `make train`).")
        meta = json.loads(path.read_text())
        if meta.get("format_version") != FORMAT_VERSION:
            raise RecommenderError(f"{path} has format {meta.get('format_version')}, this code reads "
                                   f"{FORMAT_VERSION}. Fix: retrain with `make train`.")
        cfg = TrainConfig.model_validate(meta["config"])
        item_ids = pl.read_parquet(folder / "index_items.parquet").sort("index_pos")["item_id"].to_numpy()
        user_ids = pl.read_parquet(folder / "users.parquet").sort("user_idx")["user_id"].to_numpy()
        with np.load(folder / "item_vectors.npz", allow_pickle=False) as data:
            modalities = tuple(meta["modalities"])
            aligned = AlignedBlocks(tuple(item_ids.tolist()), modalities, {m: data[f"block.{m}"] for m in modalities},
                                    data["mask"])
            space = ItemSpace(item_ids, aligned, data["fused"], load_fusion(folder / "fusion"), None)
        tuned = meta["tuned"]
        sources = SourceParams(tuned["sources"], tuned["half_life"])
        level = load_level(folder / "level", n_users=len(user_ids), n_items=len(item_ids),
                           item_vectors=space.item_vectors(), weight_kind=meta["weight_kind"], params=sources, cfg=cfg)
        ranker = RANKERS[cfg.ranker.kind].load(folder / "ranker")
        model = Fitted(cfg, meta["weight_kind"], Tuned(sources, tuned["fusion_weights"], tuned["ranker"]), space, level,
                       ranker, meta["published"], meta["new_item_scorer"], {})
        return cls(model, item_ids.astype(object), user_ids.astype(object), ItemIndex.load(folder / "index.faiss"))
