"""Scoring sources fitted on one history: each turns a chunk of users into dense (users x items) score blocks.

Every source follows one small protocol (``Source``): ``name``, ``fit(context) -> self``, ``score(users) ->
{block: scores}``, ``topk(users, k, exclude)`` and its fitted state as arrays. A block is both a ranker feature
(its score and rank for every candidate pair) and, when the configuration asks for it, a candidate generator
(its top items per user). Sources are registered by name in ``SOURCES`` (``@register``); a new one is one
module with one class and its registration.

Blocks, and what a user's row is made of:
  ease, ease_recent        EASE on the user's feedback row; "recent" weighs the row by recency (half-life in events)
  als                      ALS factors; items without history get factors mapped from their content vectors
  knn, knn_recent          item-kNN (co-consumption cosine with shrinkage) over the user's row
  seq                      co-visitation within a few positions of each other in users' timelines, from the
                           user's recent items: what people consume next
  pop                      popularity (summed feedback values)
  content, content_recent  cosine of the fused item vectors with the user's (recent) profile
  content_<modality>       the same per modality (features only)
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import scipy.sparse as sp

from ranker.errors import NotFittedError, RankerError
from ranker.retrieval.content_map import ContentToFactorMap
from ranker.retrieval.covisit import cooccurrence_counts, cosine_similarity
from ranker.retrieval.ease import EASE
from ranker.retrieval.factors import ALSFactors
from ranker.retrieval.feedback import Feedback
from ranker.topk import dense_topk

log = logging.getLogger(__name__)


@dataclass
class HistoryContext:
    """What every source fits from: one history, its feedback, and the item vectors (fused and per modality)."""

    interactions: pl.DataFrame
    feedback: Feedback
    n_users: int
    n_items: int
    item_vectors: Mapping[str, np.ndarray]  # "fused" and each modality, L2-normalised rows (zeros = no vector)
    half_life: float
    threads: int = 2
    keep_counts: bool = False  # keep co-consumption counts for later fits (tuning refits the same history)
    _matrices: dict = field(default_factory=dict)

    def cocounts(self, window: int | None):
        """Co-consumption counts (whole history, or within ``window`` positions), shared by the sources."""
        key = ("cocounts", window)
        if key in self._matrices:
            return self._matrices[key]
        counts = cooccurrence_counts(self.interactions, n_items=self.n_items, window=window)
        if self.keep_counts:
            self._matrices[key] = counts
        return counts

    def matrix(self, mapping: str, recent: bool = False) -> sp.csr_matrix:
        key = (mapping, recent)
        if key not in self._matrices:
            shape = (self.n_users, self.n_items)
            self._matrices[key] = self.feedback.matrix(mapping, shape, self.half_life if recent else None)
        return self._matrices[key]

    @property
    def item_has_history(self) -> np.ndarray:
        return np.bincount(self.feedback.item_idx, minlength=self.n_items) > 0


def _requires_fit(score):
    @functools.wraps(score)
    def checked(self, users: np.ndarray) -> dict[str, np.ndarray]:
        if self.ctx is None:
            raise NotFittedError(f"source {self.name!r} is not fitted: call fit(context), or restore(context, "
                                 "arrays) on a saved state, before scoring")
        return score(self, users)

    return checked


def _sparse_state(prefix: str, matrix: sp.csr_matrix) -> dict[str, np.ndarray]:
    return {f"{prefix}.data": matrix.data, f"{prefix}.indices": matrix.indices, f"{prefix}.indptr": matrix.indptr,
            f"{prefix}.shape": np.asarray(matrix.shape, dtype=np.int64)}


def _sparse_from(prefix: str, arrays: Mapping[str, np.ndarray]) -> sp.csr_matrix:
    shape = tuple(int(n) for n in arrays[f"{prefix}.shape"])
    return sp.csr_matrix((arrays[f"{prefix}.data"], arrays[f"{prefix}.indices"], arrays[f"{prefix}.indptr"]),
                         shape=shape)


class Source:
    """The protocol: ``name``, ``fit(ctx)``, ``score(users) -> {block: (n, items)}``, ``topk(users, k, exclude)``,
    and its fitted state as named arrays (``state`` / ``restore``), so a fitted source saves without pickle.
    Scoring before ``fit`` or ``restore`` raises NotFittedError (checked here for every subclass)."""

    name = "source"
    ctx: HistoryContext | None = None

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if "score" in cls.__dict__:
            cls.score = _requires_fit(cls.__dict__["score"])

    def fit(self, ctx: HistoryContext) -> Source:
        self.ctx = ctx
        return self

    def score(self, users: np.ndarray) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def topk(self, users: np.ndarray, k: int, exclude: sp.csr_matrix | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The top-k items of this source's first block for ``users``, ``exclude`` (users x items CSR) dropped."""
        users = np.asarray(users, dtype=np.int64)
        scores = next(iter(self.score(users).values()))
        return dense_topk(scores, k, exclude_rows=None if exclude is None else exclude[users])

    def state(self) -> dict[str, np.ndarray]:
        return {}

    def restore(self, ctx: HistoryContext, arrays: Mapping[str, np.ndarray]) -> Source:
        self.ctx = ctx
        return self


class EaseSource(Source):
    name = "ease"

    def __init__(self, *, l2: float = 200.0, mapping: str = "binary", min_item_users: int = 3,
                 max_items: int = 8000) -> None:
        self.model = EASE(l2=l2, min_item_users=min_item_users, max_items=max_items)
        self.mapping = mapping

    def fit(self, ctx: HistoryContext) -> EaseSource:
        self.ctx = ctx
        self.model.threads = ctx.threads
        self.model.fit(ctx.matrix(self.mapping))
        return self

    def score(self, users: np.ndarray) -> dict[str, np.ndarray]:
        return {"ease": self.model.score(self.ctx.matrix(self.mapping)[users]),
                "ease_recent": self.model.score(self.ctx.matrix(self.mapping, recent=True)[users])}

    def state(self) -> dict[str, np.ndarray]:
        return {"items": self.model.items_, "weights": self.model.weights_,
                "n_items": np.asarray(self.model.n_items_, dtype=np.int64)}

    def restore(self, ctx: HistoryContext, arrays: Mapping[str, np.ndarray]) -> EaseSource:
        self.ctx = ctx
        self.model.items_, self.model.weights_ = arrays["items"], arrays["weights"]
        self.model.n_items_ = int(arrays["n_items"])
        return self


class ALSSource(Source):
    name = "als"

    def __init__(self, *, factors: int = 64, regularization: float = 0.05, alpha: float = 10.0,
                 iterations: int = 15, mapping: str = "binary", seed: int = 0) -> None:
        self.model = ALSFactors(factors=factors, regularization=regularization, alpha=alpha,
                                iterations=iterations, seed=seed)
        self.mapping = mapping

    def fit(self, ctx: HistoryContext) -> ALSSource:
        self.ctx = ctx
        self.model.num_threads = ctx.threads
        self.model.fit_matrix(ctx.matrix(self.mapping))
        self.item_factors = self.model.item_factors_.copy()
        warm = self.model.warm_item_mask_
        content = ctx.item_vectors.get("fused")
        if content is not None and warm.sum() >= 2 and (~warm).any():
            # items nobody has touched yet get factors from their content (a map learned on warm items)
            self.content_map = ContentToFactorMap(kind="ridge").fit(content[warm], self.item_factors[warm])
            self.item_factors[~warm] = self.content_map.predict(content[~warm])
        return self

    def score(self, users: np.ndarray) -> dict[str, np.ndarray]:
        return {"als": self.model.user_factors_[users] @ self.item_factors.T}

    def state(self) -> dict[str, np.ndarray]:
        return {"user_factors": self.model.user_factors_, "item_factors": self.item_factors,
                "warm": self.model.warm_item_mask_}

    def restore(self, ctx: HistoryContext, arrays: Mapping[str, np.ndarray]) -> ALSSource:
        self.ctx = ctx
        self.model.user_factors_, self.item_factors = arrays["user_factors"], arrays["item_factors"]
        self.model.item_factors_ = np.where(arrays["warm"][:, None], arrays["item_factors"], 0.0).astype(np.float32)
        self.model.warm_item_mask_ = arrays["warm"]
        return self


class ItemKNNSource(Source):
    name = "knn"

    def __init__(self, *, shrinkage: float = 10.0, neighbors: int = 200, mapping: str = "binary") -> None:
        self.shrinkage, self.neighbors, self.mapping = shrinkage, neighbors, mapping

    def fit(self, ctx: HistoryContext) -> ItemKNNSource:
        self.ctx = ctx
        self.similarity = cosine_similarity(ctx.cocounts(None), shrinkage=self.shrinkage,
                                            max_neighbors=self.neighbors)
        return self

    def score(self, users: np.ndarray) -> dict[str, np.ndarray]:
        return {"knn": (self.ctx.matrix(self.mapping)[users] @ self.similarity).toarray(),
                "knn_recent": (self.ctx.matrix(self.mapping, recent=True)[users] @ self.similarity).toarray()}

    def state(self) -> dict[str, np.ndarray]:
        return _sparse_state("similarity", self.similarity)

    def restore(self, ctx: HistoryContext, arrays: Mapping[str, np.ndarray]) -> ItemKNNSource:
        self.ctx, self.similarity = ctx, _sparse_from("similarity", arrays)
        return self


class SequenceSource(Source):
    name = "seq"

    def __init__(self, *, window: int = 20, neighbors: int = 200) -> None:
        self.window, self.neighbors = window, neighbors

    def fit(self, ctx: HistoryContext) -> SequenceSource:
        self.ctx = ctx
        self.similarity = cosine_similarity(ctx.cocounts(self.window), max_neighbors=self.neighbors)
        return self

    def score(self, users: np.ndarray) -> dict[str, np.ndarray]:
        return {"seq": (self.ctx.matrix("binary", recent=True)[users] @ self.similarity).toarray()}

    def state(self) -> dict[str, np.ndarray]:
        return _sparse_state("similarity", self.similarity)

    def restore(self, ctx: HistoryContext, arrays: Mapping[str, np.ndarray]) -> SequenceSource:
        self.ctx, self.similarity = ctx, _sparse_from("similarity", arrays)
        return self


class PopularitySource(Source):
    name = "pop"

    def __init__(self, *, mapping: str = "binary") -> None:
        self.mapping = mapping

    def fit(self, ctx: HistoryContext) -> PopularitySource:
        self.ctx = ctx
        self.popularity = np.asarray(ctx.matrix(self.mapping).sum(axis=0), dtype=np.float32).ravel()
        return self

    def score(self, users: np.ndarray) -> dict[str, np.ndarray]:
        return {"pop": np.broadcast_to(self.popularity, (len(users), len(self.popularity))).copy()}

    def state(self) -> dict[str, np.ndarray]:
        return {"popularity": self.popularity}

    def restore(self, ctx: HistoryContext, arrays: Mapping[str, np.ndarray]) -> PopularitySource:
        self.ctx, self.popularity = ctx, arrays["popularity"]
        return self


class ContentSource(Source):
    name = "content"

    def __init__(self, *, mapping: str = "binary") -> None:
        self.mapping = mapping

    def _profiles(self, users: np.ndarray, vectors: np.ndarray, recent: bool) -> np.ndarray:
        profiles = np.asarray(self.ctx.matrix(self.mapping, recent=recent)[users] @ vectors, dtype=np.float32)
        norms = np.linalg.norm(profiles, axis=1, keepdims=True)
        return np.divide(profiles, norms, out=np.zeros_like(profiles), where=norms > 0)

    def score(self, users: np.ndarray) -> dict[str, np.ndarray]:
        out = {}
        for name, vectors in self.ctx.item_vectors.items():
            block = "content" if name == "fused" else f"content_{name}"
            out[block] = self._profiles(users, vectors, recent=False) @ vectors.T
            if name == "fused":
                out["content_recent"] = self._profiles(users, vectors, recent=True) @ vectors.T
        return out


SOURCES: dict[str, type[Source]] = {}


def register(cls: type[Source]) -> type[Source]:
    """Make a source available by its ``name`` to configs and tuning (``@register`` on the class)."""
    if cls.name in SOURCES and SOURCES[cls.name] is not cls:
        raise RankerError(f"source name {cls.name!r} is taken by {SOURCES[cls.name].__name__}; pick another name")
    SOURCES[cls.name] = cls
    return cls


for _cls in (EaseSource, ALSSource, ItemKNNSource, SequenceSource, PopularitySource, ContentSource):
    register(_cls)


def make_source(name: str, params: Mapping | None = None) -> Source:
    if name not in SOURCES:
        raise RankerError(f"source {name!r} is unknown; registered: {sorted(SOURCES)}. Fix: import the module "
                          "that registers it (train.sources.<name>.module) or correct the name")
    return SOURCES[name](**dict(params or {}))


def check_source_params(name: str, params: Mapping) -> None:
    """Refuse arguments the source's constructor does not take, naming the ones it does (config-time check)."""
    cls = make_source(name).__class__  # an unknown name raises here
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise RankerError(f"source {name!r}: unknown argument(s) {unknown}; it takes {accepted}")
