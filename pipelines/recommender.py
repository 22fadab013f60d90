"""The one object a run publishes: everything a trained model needs, behind ids the catalog and logs use.

    rec = Recommender.load("store/demo/latest")
    item_ids, scores = rec.recommend(["u1", "u2"], k=10)      # (n_users, k) arrays, implicit-style
    rec.similar_items(["i7"], k=5); rec.recommend_new_items(["u1"], k=3)

Known users with history get the published model's list (the ranker, or the source the guard published),
with the new-item exposure policy; unknown users, and users whose history names no catalog item, get the
popularity list. Items with vectors but no interactions are reached through content.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from pipelines.levels import SourceParams, load_level, save_level
from pipelines.procedure import Fitted, Tuned
from pipelines.recommend import Lists, new_item_ranking, recommend
from pipelines.space import ItemSpace
from pipelines.train_config import TrainConfig
from fusion.align import AlignedBlocks
from fusion.fuse import load_fusion
from ranker.index import ItemIndex
from ranker.lgbm import LGBMRankerModel
from ranker.mlp import MLPRankerModel

FORMAT_VERSION = 1
_RANKERS = {"lgbm": LGBMRankerModel, "mlp": MLPRankerModel}


class RecommenderError(ValueError):
    """A folder that does not hold a saved Recommender, or a request it cannot answer; the message says why."""


@dataclass
class Recommender:
    model: Fitted
    item_ids: np.ndarray  # item_idx -> item_id
    user_ids: np.ndarray  # user_idx -> user_id
    index: ItemIndex

    @classmethod
    def from_fitted(cls, model: Fitted, user_ids: np.ndarray) -> Recommender:
        index = ItemIndex.build(model.space.fused, kind="auto", seed=model.cfg.seed)
        return cls(model, np.asarray(model.space.item_ids, dtype=object), np.asarray(user_ids, dtype=object), index)

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
        if warm.size:
            result = self.model.level.run(users[warm], self.model.plan(k), exclude_seen=exclude_seen)
            lists = recommend(self.model, result, users[warm], k)
            idx[warm], scores[warm], source[warm] = lists.idx, lists.scores, lists.source
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
        items = self._positions(item_ids, self.item_ids)
        fused = self.model.space.fused
        queries = np.where((items >= 0)[:, None], fused[np.clip(items, 0, None)], 0.0).astype(np.float32)
        found, found_scores = self.index.search(queries, k + 1)
        idx = np.full((len(items), k), -1, dtype=np.int64)
        scores = np.full((len(items), k), -np.inf, dtype=np.float32)
        for row, item in enumerate(items):
            keep = [(j, s) for j, s in zip(found[row], found_scores[row], strict=True) if j >= 0 and j != item][:k]
            if item >= 0 and np.abs(fused[item]).sum() > 0 and keep:
                idx[row, : len(keep)], scores[row, : len(keep)] = zip(*keep, strict=True)
        return self._ids(idx), scores

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
        ranker = _RANKERS[cfg.ranker.kind].load(folder / "ranker")
        model = Fitted(cfg, meta["weight_kind"], Tuned(sources, tuned["fusion_weights"], tuned["ranker"]), space, level,
                       ranker, meta["published"], meta["new_item_scorer"], {})
        return cls(model, item_ids.astype(object), user_ids.astype(object), ItemIndex.load(folder / "index.faiss"))
