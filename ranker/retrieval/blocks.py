"""One pass over users in chunks: every source's score blocks -> candidates, per-pair scores and ranks, and
each block's own top-k list (the same-run baselines), with seen and unavailable items blocked.

Memory stays O(chunk x items x blocks): the chunk shrinks as the catalog grows (``cells``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from ranker.topk import dense_topk


@dataclass(frozen=True)
class BlockPlan:
    """candidate_depth: block -> how many of its top items it proposes (0 or absent: a feature only).
    new_items: bool (n_items,) items without history; new_depth: block -> how many of its top *new* items it
    proposes besides (a new item rarely tops a catalog-wide list, but must reach the ranker to be scored).
    rank_depth: ranks are exact down to this depth; deeper items get rank_depth + 1.
    list_k: also keep each block's top-list_k list (0: none), and with new_items its list of new items only
    (as "new/<block>")."""

    candidate_depth: Mapping[str, int]
    rank_depth: int = 200
    list_k: int = 0
    new_items: np.ndarray | None = None
    new_depth: Mapping[str, int] = field(default_factory=dict)


@dataclass
class BlockResult:
    candidates: pl.DataFrame  # user_idx, item_idx, {block}_score, {block}_rank, n_sources; sorted by user, item
    lists: dict[str, np.ndarray]  # block -> (n_users, list_k) item_idx, -1 padded, users in the given order
    list_scores: dict[str, np.ndarray]  # block -> the scores of those items, -inf padded


def _ranks(scores: np.ndarray, depth: int) -> np.ndarray:
    """int32 (n, items): 1-based rank of each item in its row for the top ``depth``, depth + 1 beyond."""
    n, m = scores.shape
    depth = min(depth, m)
    ranks = np.full((n, m), depth + 1, dtype=np.int32)
    top, _ = dense_topk(np.where(scores == 0, -np.inf, scores), depth)  # 0 = no signal: not ranked
    rows = np.repeat(np.arange(n), depth)
    valid = top.ravel() >= 0
    ranks[rows[valid], top.ravel()[valid]] = np.tile(np.arange(1, depth + 1, dtype=np.int32), n)[valid]
    return ranks


def score_blocks(score: Callable[[np.ndarray], dict[str, np.ndarray]], users: np.ndarray,
                 blocked: Callable[[np.ndarray], np.ndarray], plan: BlockPlan, cells: int = 1 << 24) -> BlockResult:
    """``score(users) -> {block: (n, items) scores}``; ``blocked(users) -> bool (n, items)`` (seen, unavailable).

    A block proposes an item only where its score is not 0 (0 = no signal, e.g. EASE outside its items).
    """
    users = np.asarray(users, dtype=np.int64)
    frames, lists, list_scores = [], {}, {}
    if len(users):
        probe = score(users[:1])
        step = max(1, cells // max(next(iter(probe.values())).shape[1] * len(probe), 1))
    for start in range(0, len(users), step if len(users) else 1):
        chunk = users[start:start + step]
        frame, chunk_lists = _chunk(score(chunk), chunk, blocked(chunk), plan)
        frames.append(frame)
        for name, (top, top_scores) in chunk_lists.items():
            lists.setdefault(name, []).append(top)
            list_scores.setdefault(name, []).append(top_scores)
    candidates = pl.concat(frames) if frames else pl.DataFrame()
    return BlockResult(candidates, {name: np.concatenate(parts) for name, parts in lists.items()},
                       {name: np.concatenate(parts) for name, parts in list_scores.items()})


def _chunk(blocks: dict[str, np.ndarray], users: np.ndarray, blocked: np.ndarray, plan: BlockPlan):
    proposed = np.zeros(blocked.shape, dtype=np.int16)
    masked, lists = {}, {}
    for name in sorted(blocks):
        scores = np.where(blocked, -np.inf, blocks[name]).astype(np.float32)
        masked[name] = scores
        depth = int(plan.candidate_depth.get(name, 0))
        if depth:
            _propose(proposed, np.where(scores == 0, -np.inf, scores), depth)
        new_depth = int(plan.new_depth.get(name, 0))
        if new_depth and plan.new_items is not None and plan.new_items.any():
            _propose(proposed, np.where(plan.new_items[None, :], scores, -np.inf), new_depth)
        if plan.list_k:
            lists[name] = dense_topk(scores, plan.list_k)
            if plan.new_items is not None:
                lists[f"new/{name}"] = dense_topk(np.where(plan.new_items[None, :], scores, -np.inf), plan.list_k)
    rows, cols = np.nonzero(proposed)
    columns = {"user_idx": users[rows], "item_idx": cols.astype(np.int64)}
    for name, scores in masked.items():
        columns[f"{name}_score"] = blocks[name][rows, cols].astype(np.float32)
        columns[f"{name}_rank"] = _ranks(scores, plan.rank_depth)[rows, cols] if rows.size else np.zeros(0, np.int32)
    columns["n_sources"] = proposed[rows, cols].astype(np.float32)
    return pl.DataFrame(columns), lists


def _propose(proposed: np.ndarray, scores: np.ndarray, depth: int) -> None:
    top, _ = dense_topk(scores, depth)
    rows = np.repeat(np.arange(scores.shape[0]), top.shape[1])
    keep = top.ravel() >= 0
    proposed[rows[keep], top.ravel()[keep]] += 1


def blocked_mask(seen_rows, user_cutoff_us: np.ndarray | None, item_first_us: np.ndarray | None) -> np.ndarray:
    """bool (n, items): items the user has seen, and items not yet available at the user's cutoff."""
    mask = seen_rows.toarray() != 0
    if user_cutoff_us is not None and item_first_us is not None:
        mask |= item_first_us[None, :] >= user_cutoff_us[:, None]
    return mask
