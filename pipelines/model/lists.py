"""Top-k lists from a fitted procedure: the published model's ranking, and the exposure policy for new items."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipelines.model.fit_ranker import top_lists
from pipelines.model.procedure import Fitted
from ranker.retrieval.blocks import BlockResult


@dataclass
class Lists:
    """Per user (rows aligned with ``users``): item_idx (-1 padded), scores, and what placed each item."""

    users: np.ndarray
    idx: np.ndarray
    scores: np.ndarray
    source: np.ndarray  # str per cell: "ranker", a block name, or "new_item_slot"


def ranked(fitted: Fitted, result: BlockResult, users: np.ndarray, k: int, model: str | None = None):
    """(idx, scores) of ``model`` ("ranker" or a block; default: the published one) for ``users``."""
    model = model or fitted.published
    if model == "ranker":
        data = fitted.level.features(result.candidates)
        return top_lists(users, data.item_idx, data.user_idx, fitted.ranker.predict(data), k)
    return result.lists[model][:, :k], result.list_scores[model][:, :k]


def new_item_ranking(fitted: Fitted, result: BlockResult, users: np.ndarray, new_items: np.ndarray, k: int):
    """(idx, scores) of new items only, ordered by the new-item scorer the guard chose."""
    if fitted.new_item_scorer == "ranker":
        frame = result.candidates
        rows = new_items[frame["item_idx"].to_numpy()]
        data = fitted.level.features(frame.filter(rows)) if rows.any() else None
        if data is None:
            return np.full((len(users), k), -1, dtype=np.int64), np.full((len(users), k), -np.inf, np.float32)
        return top_lists(users, data.item_idx, data.user_idx, fitted.ranker.predict(data), k)
    name = f"new/{fitted.new_item_scorer}"
    return result.lists[name][:, :k], result.list_scores[name][:, :k]


def with_new_items(idx: np.ndarray, scores: np.ndarray, new_idx: np.ndarray, new_scores: np.ndarray,
                   positions: tuple[int, ...], base_source: str) -> Lists:
    """Reserve ``positions`` (1-based) for each user's best new items not already above them.

    The other items keep their order and move down; the list keeps its length. A user with no new item to
    offer keeps their list as it was.
    """
    n, k = idx.shape
    out_idx, out_scores = idx.copy(), scores.copy()
    source = np.full((n, k), base_source, dtype=object)
    source[idx < 0] = ""
    for row in range(n):
        offers = [(i, s) for i, s in zip(new_idx[row], new_scores[row]) if i >= 0]
        if not offers:
            continue
        items, item_scores, tags = list(idx[row]), list(scores[row]), list(source[row])
        for position in sorted(p for p in positions if p <= k):
            taken = set(items[: position - 1])
            offer = next(((i, s) for i, s in offers if i not in taken), None)
            if offer is None:
                break
            offers.remove(offer)
            if offer[0] in items:  # ranked lower already: move it up instead of repeating it
                at = items.index(offer[0])
                del items[at], item_scores[at], tags[at]
            items.insert(position - 1, offer[0])
            item_scores.insert(position - 1, offer[1])
            tags.insert(position - 1, "new_item_slot")
        out_idx[row], out_scores[row], source[row] = items[:k], item_scores[:k], tags[:k]
    return Lists(np.arange(n), out_idx, out_scores, source)


def recommend(fitted: Fitted, result: BlockResult, users: np.ndarray, k: int, *, exposure: bool = True,
              ranked_lists: tuple[np.ndarray, np.ndarray] | None = None) -> Lists:
    """The published lists for ``users`` (with the new-item exposure policy unless ``exposure`` is off);
    ``ranked_lists``: the published model's (idx, scores) when the caller has them already."""
    idx, scores = ranked_lists if ranked_lists is not None else ranked(fitted, result, users, k)
    new_items = ~fitted.level.ctx.item_has_history
    positions = fitted.cfg.new_items.positions if exposure else ()
    if positions and new_items.any():
        new_idx, new_scores = new_item_ranking(fitted, result, users, new_items, len(positions))
        lists = with_new_items(idx, scores, new_idx, new_scores, positions, fitted.published)
    else:
        lists = with_new_items(idx, scores, np.full((len(users), 0), -1), np.zeros((len(users), 0)), (),
                               fitted.published)
    lists.users = users
    return lists
