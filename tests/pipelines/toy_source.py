"""A candidate source added the way a user adds one: this module and its registration, nothing else.

Kept trivial on purpose: an item's score is its number of events divided by its row position + 1.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ranker.retrieval.sources import HistoryContext, Source, register


@register
class ToySource(Source):
    name = "toy"

    def __init__(self, *, boost: float = 1.0) -> None:
        self.boost = boost

    def fit(self, ctx: HistoryContext) -> ToySource:
        self.ctx = ctx
        counts = np.bincount(ctx.feedback.item_idx, minlength=ctx.n_items).astype(np.float32)
        self.item_scores = self.boost * counts / (np.arange(ctx.n_items, dtype=np.float32) + 1)
        return self

    def score(self, users: np.ndarray) -> dict[str, np.ndarray]:
        return {"toy": np.broadcast_to(self.item_scores, (len(users), self.ctx.n_items)).copy()}

    def state(self) -> dict[str, np.ndarray]:
        return {"item_scores": self.item_scores}

    def restore(self, ctx: HistoryContext, arrays: Mapping[str, np.ndarray]) -> ToySource:
        self.ctx, self.item_scores = ctx, arrays["item_scores"]
        return self
