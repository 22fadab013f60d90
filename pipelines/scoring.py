"""Candidates from every source, the ranker's features for them, and top-k lists from ranker scores."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import polars as pl

from pipelines.modeling import History, ItemSpace
from pipelines.train_config import TrainConfig
from ranker.candidates import content_topk, dense_topk, merge_candidates, popularity_topk
from ranker.covisit import covisitation_scores, covisitation_topk
from ranker.data import RankingData
from ranker.features import build_features


USER_CHUNK = 2048  # users scored at once: bounds the dense (users x items) score matrices


def chunked(user_idx: np.ndarray, score_chunk) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate `score_chunk(users) -> (idx, scores)` over chunks of users (memory stays O(chunk x items))."""
    parts = [score_chunk(user_idx[i:i + USER_CHUNK]) for i in range(0, len(user_idx), USER_CHUNK)]
    if not parts:
        return np.zeros((0, 0), np.int64), np.zeros((0, 0), np.float32)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def dense_user_topk(user_vectors: np.ndarray, item_vectors: np.ndarray, user_idx: np.ndarray, k: int, seen):
    """Top-k of user_vectors[u] . item_vectors over all items, seen items excluded, in user chunks."""
    return chunked(user_idx, lambda users: dense_topk(user_vectors[users] @ item_vectors.T, k,
                                                      exclude_rows=seen[users]))


def als_topk(history: History, user_idx: np.ndarray, k: int, *, completed: bool = True):
    """ALS scores; with `completed`, items without interactions score through their content-mapped factors."""
    items = history.item_factors if completed else history.als.item_factors_
    return dense_user_topk(history.als.user_factors_, items, user_idx, k, history.seen)


def source_topk(history: History, space: ItemSpace, cfg: TrainConfig, user_idx: np.ndarray) -> dict:
    c, seen = cfg.candidates, history.seen
    sources = {}
    if c.content:
        sources["content"] = content_topk(history.profiles["fused"], space.index.search, user_idx, c.content, exclude=seen)
    if c.covis:
        sources["covis"] = covisitation_topk(history.interactions, n_items=space.n_items, user_idx=user_idx, k=c.covis,
                                             exclude=seen, matrix=history.covis)
    if c.als:
        sources["als"] = als_topk(history, user_idx, c.als)
    if c.pop:
        sources["pop"] = popularity_topk(history.interactions, n_items=space.n_items, user_idx=user_idx, k=c.pop,
                                         since=history.now - timedelta(days=c.recent_days), exclude=seen)
    return {name: (user_idx, idx, scores) for name, (idx, scores) in sources.items()}


def candidates(history: History, space: ItemSpace, cfg: TrainConfig, user_idx: np.ndarray) -> pl.DataFrame:
    return merge_candidates(source_topk(history, space, cfg, user_idx))


def features(history: History, space: ItemSpace, pairs: pl.DataFrame, labels: pl.DataFrame | None = None) -> RankingData:
    """Ranker features of (user, item) pairs; `pairs` needs user_idx, item_idx sorted (merge_candidates output)."""
    vector_sets = {"fused": (history.profiles["fused"], space.fused),
                   "als": (history.als.user_factors_, history.item_factors)}
    for modality in space.aligned.modalities:
        vector_sets[modality] = (history.profiles[modality], space.aligned.blocks[modality])
    user_idx, item_idx = pairs["user_idx"].to_numpy(), pairs["item_idx"].to_numpy()
    pair_scores = {"covis_pair": covisitation_scores(history.covis, history.seen, user_idx, item_idx)}
    return build_features(pairs, vector_sets=vector_sets, item_stats=history.item_stats,
                          user_stats=history.user_stats, pair_scores=pair_scores, labels=labels, main_vectors="fused")


def topk_from_scores(data: RankingData, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per user, the k best-scoring candidates: (user_idx (n,), idx (n, k) padded -1, scores (n, k) padded -inf)."""
    frame = (pl.DataFrame({"user_idx": data.user_idx, "item_idx": data.item_idx, "score": scores.astype(np.float32)})
             .sort(["user_idx", "score", "item_idx"], descending=[False, True, False])
             .group_by("user_idx", maintain_order=True).head(k))
    users = frame["user_idx"].unique(maintain_order=True).to_numpy()
    idx = np.full((len(users), k), -1, dtype=np.int64)
    out = np.full((len(users), k), -np.inf, dtype=np.float32)
    pos = frame.with_columns(rank=pl.int_range(pl.len()).over("user_idx"),
                             row=pl.col("user_idx").rank("dense").cast(pl.Int64) - 1)
    idx[pos["row"].to_numpy(), pos["rank"].to_numpy()] = pos["item_idx"].to_numpy()
    out[pos["row"].to_numpy(), pos["rank"].to_numpy()] = pos["score"].to_numpy()
    return users, idx, out
