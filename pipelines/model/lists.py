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
    offer keeps their list as it was. Vectorised over users: one pass per reserved position.
    """
    n, k = idx.shape
    out_idx, out_scores = idx.copy(), scores.astype(np.float32, copy=True)
    source = np.full((n, k), base_source, dtype=object)
    source[idx < 0] = ""
    offers = np.asarray(new_idx, dtype=np.int64).reshape(n, -1)
    offer_scores = np.asarray(new_scores, dtype=np.float32).reshape(n, -1)
    unused = offers >= 0
    active = unused.any(axis=1)  # a user stops at the first position with nothing left to offer
    rows = np.arange(n)
    for position in sorted(p for p in positions if p <= k):
        above = out_idx[:, : position - 1]
        available = unused & ~(offers[:, :, None] == above[:, None, :]).any(axis=2)
        active &= available.any(axis=1)
        if not active.any():
            break
        choice = available.argmax(axis=1)
        item, score = offers[rows, choice], offer_scores[rows, choice]
        unused[rows[active], choice[active]] = False
        # below the slot: the list from the slot on, without the offered item if it was ranked lower already
        tail = slice(position - 1, k)
        keep = out_idx[:, tail] != item[:, None]
        order = np.argsort(~keep, axis=1, kind="stable")[:, : k - position]
        slot = np.full((n, 1), "new_item_slot", dtype=object)
        for array, head in ((out_idx, item[:, None]), (out_scores, score[:, None]), (source, slot)):
            moved = np.take_along_axis(array[:, tail], order, axis=1)
            array[active, tail] = np.concatenate([head, moved], axis=1)[active]
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
