"""A *level*: every source fitted on one history, and what it says about a set of users at their own time.

The same code serves the ranker's training levels, the validation level, the test protocol and the
production fit; only the history, the users, their cutoffs (for availability) and the labels change.
Every feature of a pair is computed from the level's history only, at the user's time (their last event).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from pipelines.model.config import TrainConfig
from ranker.evaluation.splits import NO_CUTOFF
from ranker.ranking.asof import US_PER_DAY, ItemTimeline
from ranker.ranking.data import RankingData
from ranker.ranking.features import build_features
from ranker.retrieval.blocks import BlockPlan, BlockResult, blocked_mask, score_blocks
from ranker.retrieval.feedback import MAPPINGS, Feedback
from ranker.retrieval.sources import HistoryContext, make_source

log = logging.getLogger(__name__)
DEFAULT_MAPPING = {"rating": "rating", "count": "log"}


@dataclass(frozen=True)
class SourceParams:
    """The (tuned) constructor parameters of every source, and the recency half-life of the *_recent profiles."""

    params: dict[str, dict]
    half_life: float

    @classmethod
    def from_config(cls, cfg: TrainConfig, weight_kind: str) -> SourceParams:
        def mapping(value: str) -> str:
            return DEFAULT_MAPPING[weight_kind] if value == "auto" or value not in MAPPINGS[weight_kind] else value

        params = {"als": {"factors": cfg.als.factors, "regularization": cfg.als.regularization,
                          "alpha": cfg.als.alpha, "iterations": cfg.als.iterations,
                          "mapping": mapping(cfg.als.mapping), "seed": cfg.seed},
                  "knn": {"shrinkage": cfg.knn.shrinkage, "neighbors": cfg.knn.neighbors},
                  "seq": {"window": cfg.seq.window, "neighbors": cfg.seq.neighbors},
                  "pop": {"mapping": "binary"}, "content": {"mapping": mapping("auto")}}
        if cfg.ease.enabled:
            params["ease"] = {"l2": cfg.ease.l2, "mapping": mapping(cfg.ease.mapping),
                              "min_item_users": cfg.ease.min_item_users, "max_items": cfg.ease.max_items}
        for name, spec in cfg.sources.items():  # sources added by configuration (registered elsewhere)
            params[name] = {key: value for key, value in spec.items() if key != "module"}
        return cls(params, cfg.candidates.half_life)

    def with_source(self, name: str, **updates) -> SourceParams:
        return SourceParams({**self.params, name: {**self.params[name], **updates}}, self.half_life)


def _first_event_us(interactions: pl.DataFrame, n: int, key: str, agg) -> np.ndarray:
    out = np.full(n, NO_CUTOFF, dtype=np.int64)
    frame = interactions.group_by(key).agg(agg(pl.col("ts").dt.epoch("us")).alias("t"))
    out[frame[key].to_numpy()] = frame["t"].to_numpy()
    return out


@dataclass
class Level:
    ctx: HistoryContext
    sources: dict
    user_time_us: np.ndarray  # the user's last history event (NO_CUTOFF: none)
    item_first_us: np.ndarray  # the item's first history event (NO_CUTOFF: none)
    timeline: ItemTimeline
    user_stats: pl.DataFrame
    item_static: pl.DataFrame
    fit_seconds: dict = field(default_factory=dict)
    with_vectors: bool = False  # the MLP ranker also reads each row's user and item vectors (memory: rows x dim)

    @property
    def seen(self):
        return self.ctx.matrix("binary")

    def score(self, users: np.ndarray) -> dict[str, np.ndarray]:
        out = {}
        for source in self.sources.values():
            out.update(source.score(users))
        return out

    def blocked(self, users: np.ndarray, cutoff_us: np.ndarray | None, exclude_seen: bool = True) -> np.ndarray:
        seen = self.seen[users] if exclude_seen else self.seen[users] * 0
        return blocked_mask(seen, None if cutoff_us is None else cutoff_us[users], self.item_first_us)

    def run(self, users: np.ndarray, plan: BlockPlan, cutoff_us: np.ndarray | None = None,
            exclude_seen: bool = True) -> BlockResult:
        """Candidates and lists for ``users``; with ``cutoff_us``, items first seen at or after a user's cutoff
        are unavailable to that user (they did not exist yet, as far as the history knows)."""
        return score_blocks(self.score, users, lambda chunk: self.blocked(chunk, cutoff_us, exclude_seen), plan)

    def features(self, candidates: pl.DataFrame, labels: pl.DataFrame | None = None) -> RankingData:
        users = candidates["user_idx"].to_numpy()
        asof = self.timeline.features(candidates["item_idx"].to_numpy(), self.user_time_us[users])
        # the content blocks already give every pair its cosines; the vectors themselves only feed the MLP
        vector_sets = {"fused": (self._profiles(), self.ctx.item_vectors["fused"])} if self.with_vectors else {}
        return build_features(candidates, vector_sets=vector_sets, item_stats=self.item_static,
                              user_stats=self.user_stats, pair_scores=asof, labels=labels,
                              main_vectors="fused" if self.with_vectors else None)

    def _profiles(self) -> np.ndarray:
        if not hasattr(self, "_profile_cache"):
            fused = self.ctx.item_vectors["fused"]
            profiles = np.asarray(self.ctx.matrix("binary") @ fused, dtype=np.float32)
            norms = np.linalg.norm(profiles, axis=1, keepdims=True)
            self._profile_cache = np.divide(profiles, norms, out=np.zeros_like(profiles), where=norms > 0)
        return self._profile_cache


def fit_level(interactions: pl.DataFrame, *, n_users: int, n_items: int, item_vectors: dict, weight_kind: str,
              params: SourceParams, cfg: TrainConfig) -> Level:
    """Fit every source on ``interactions``."""
    ctx = _context(interactions, n_users, n_items, item_vectors, weight_kind, params, cfg)
    sources, seconds = {}, {}
    for name, source_params in params.params.items():
        started = time.perf_counter()
        sources[name] = make_source(name, source_params).fit(ctx)
        seconds[name] = round(time.perf_counter() - started, 2)
    return _assemble(ctx, sources, cfg, seconds)


def save_level(level: Level, folder: Path) -> None:
    """The history (parquet) and every source's fitted arrays (one .npz, no pickle)."""
    folder.mkdir(parents=True, exist_ok=True)
    level.ctx.interactions.write_parquet(folder / "history.parquet")
    arrays = {f"{name}/{key}": value for name, source in level.sources.items() for key, value in source.state().items()}
    with open(folder / "sources.npz", "wb") as handle:
        np.savez(handle, **arrays)


def load_level(folder: Path, *, n_users: int, n_items: int, item_vectors: dict, weight_kind: str,
               params: SourceParams, cfg: TrainConfig) -> Level:
    """A level saved by ``save_level``: the sources' fitted arrays restored, nothing refitted."""
    interactions = pl.read_parquet(folder / "history.parquet")
    ctx = _context(interactions, n_users, n_items, item_vectors, weight_kind, params, cfg)
    with np.load(folder / "sources.npz", allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    sources = {}
    for name, source_params in params.params.items():
        mine = {key.split("/", 1)[1]: value for key, value in arrays.items() if key.startswith(f"{name}/")}
        sources[name] = make_source(name, source_params).restore(ctx, mine)
    return _assemble(ctx, sources, cfg, {})


def _context(interactions, n_users, n_items, item_vectors, weight_kind, params, cfg) -> HistoryContext:
    feedback = Feedback.from_interactions(interactions, weight_kind, n_users)
    return HistoryContext(interactions, feedback, n_users, n_items, item_vectors, params.half_life, cfg.threads)


def _assemble(ctx: HistoryContext, sources: dict, cfg: TrainConfig, seconds: dict) -> Level:
    interactions, n_users, n_items = ctx.interactions, ctx.n_users, ctx.n_items
    user_time = _first_event_us(interactions, n_users, "user_idx", lambda c: c.max())
    item_first = _first_event_us(interactions, n_items, "item_idx", lambda c: c.min())
    return Level(ctx, sources, user_time, item_first, ItemTimeline(interactions, ctx.feedback.user_mean, n_items),
                 _user_stats(interactions, ctx.feedback, n_users), _item_static(ctx.item_vectors, ctx.item_has_history),
                 seconds, with_vectors=cfg.ranker.kind == "mlp")


def _user_stats(interactions: pl.DataFrame, feedback: Feedback, n_users: int) -> pl.DataFrame:
    t = pl.col("ts").dt.epoch("us")
    stats = interactions.group_by("user_idx").agg(
        user_events=pl.len().cast(pl.Float32).log1p(),
        user_weight_std=pl.col("weight").std().fill_null(0.0).cast(pl.Float32),
        user_span_days=((t.max() - t.min()) / US_PER_DAY).cast(pl.Float32),
        user_last_day_events=(t >= t.max() - US_PER_DAY).sum().cast(pl.Float32))
    frame = pl.DataFrame({"user_idx": np.arange(n_users, dtype=np.int64), "user_mean_weight": feedback.user_mean})
    return frame.join(stats, on="user_idx", how="left").fill_null(0.0)


def _item_static(item_vectors: dict, has_history: np.ndarray) -> pl.DataFrame:
    columns = {"item_idx": np.arange(len(has_history), dtype=np.int64),
               "item_is_new": (~has_history).astype(np.float32)}
    for name, vectors in item_vectors.items():
        if name != "fused":
            columns[f"has_{name}"] = (np.abs(vectors).sum(axis=1) > 0).astype(np.float32)
    return pl.DataFrame(columns)
