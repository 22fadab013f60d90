"""`python -m pipelines recs --user U`: a user's recent history, then their published list with, per item, the
sources that proposed it and why it ranks there.

The list is computed as `Recommender.lists` computes it (the same candidates, features and exposure policy),
so the scores shown are the ones topk.parquet holds, and a LightGBM ranker's contributions add up to them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import polars as pl

from pipelines.inspection.explain import contributions, describe
from pipelines.inspection.open_run import OpenedRun, position
from pipelines.model.lists import recommend
from pipelines.model.new_items import NEW_DEPTH
from pipelines.model.procedure import Fitted
from ranker.retrieval.blocks import BlockResult

HISTORY_SHOWN = 10
NEW_ITEM_SLOT = "new_item_slot"
FALLBACK = "popularity_fallback"


@dataclass
class Recommended:
    rank: int
    item_idx: int
    score: float
    placed_by: str  # "ranker", a candidate block, "new_item_slot" or "popularity_fallback"
    found_by: list[str]  # the blocks that proposed it, with its rank in each
    found_new: list[str]  # the blocks whose new-item pass proposed it, with its rank among new items
    contributions: np.ndarray | None = None  # the ranker's per-feature contributions then bias (LightGBM only)


def _rank(scores: np.ndarray, item: int) -> int | None:
    """1-based rank of ``item`` in ``scores`` as dense_topk orders them (ties: the smaller index first); None
    when its score is -inf (not rankable)."""
    if not np.isfinite(scores[item]):
        return None
    return 1 + int((scores > scores[item]).sum() + (scores[:item] == scores[item]).sum())


def _proposals(fitted: Fitted, user: int, items: np.ndarray) -> list[tuple[list[str], list[str]]]:
    """Which blocks proposed each item, as `score_blocks` decides it: its rank within a block's candidate
    depth (seen items and zero scores excluded), or, for an item without history, within the block's top
    new items (the new-item pass)."""
    users = np.array([user])
    blocked = fitted.level.blocked(users, None)[0]
    new = ~fitted.level.ctx.item_has_history
    raw = {block: scores[0].astype(np.float32) for block, scores in fitted.level.score(users).items()}
    depth = {b: d for b, d in sorted(fitted.cfg.candidates.depth.items()) if d > 0 and b in raw}
    ranked = {b: np.where(blocked | (raw[b] == 0), -np.inf, raw[b]) for b in depth}
    ranked_new = {b: np.where(blocked | ~new, -np.inf, raw[b]) for b in sorted(NEW_DEPTH) if b in raw}
    found = []
    for item in items.tolist():
        ranks = {b: _rank(scores, item) for b, scores in ranked.items()}
        mine = [f"{b} #{r}" for b, r in ranks.items() if r is not None and r <= depth[b]]
        ranks_new = {b: _rank(scores, item) for b, scores in ranked_new.items()} if new[item] else {}
        among_new = [f"{b} #{r}" for b, r in ranks_new.items() if r is not None and r <= NEW_DEPTH[b]]
        found.append((mine, among_new))
    return found


def _explained(fitted: Fitted, result: BlockResult, placed: np.ndarray) -> dict[int, np.ndarray]:
    """item_idx -> contributions row, for the items the ranker placed (LightGBM only; {} otherwise)."""
    by_ranker = (placed == "ranker") | ((placed == NEW_ITEM_SLOT) & (fitted.new_item_scorer == "ranker"))
    if not by_ranker.any() or result.candidates.height == 0:
        return {}
    data = fitted.level.features(result.candidates)
    rows = contributions(fitted.ranker, data)
    return {} if rows is None else dict(zip(data.item_idx.tolist(), rows, strict=True))


def user_recommendations(opened: OpenedRun, user: int, k: int) -> list[Recommended]:
    """The published list of user position ``user``, item by item, with what placed and what proposed each."""
    rec, fitted = opened.rec, opened.rec.model
    users = np.array([user], dtype=np.int64)
    if np.diff(fitted.level.seen.indptr)[user] == 0:  # no history: the popularity list, as `lists` gives it
        lists = rec.lists(users, k)
        return [Recommended(r + 1, int(i), float(s), FALLBACK, ["pop"], [])
                for r, (i, s) in enumerate(zip(lists.idx[0], lists.scores[0], strict=True)) if i >= 0]
    result = fitted.level.run(users, fitted.plan(k))
    lists = recommend(fitted, result, users, k)
    keep = lists.idx[0] >= 0
    idx, scores, placed = lists.idx[0][keep], lists.scores[0][keep], lists.source[0][keep]
    explained = _explained(fitted, result, placed)
    found = _proposals(fitted, user, idx)
    return [Recommended(r + 1, int(i), float(s), str(p), f, n, explained.get(int(i)))
            for r, (i, s, p, (f, n)) in enumerate(zip(idx, scores, placed, found, strict=True))]


def history_lines(opened: OpenedRun, user: int, shown: int = HISTORY_SHOWN) -> list[str]:
    history = opened.rec.model.level.ctx.interactions.filter(pl.col("user_idx") == user)
    item_ids = opened.rec.item_ids
    lines = [f"history: {history.height} events in the run, the last {min(shown, history.height)} newest first:"]
    for row in history.sort("ts", descending=True).head(shown).iter_rows(named=True):
        item = str(item_ids[row["item_idx"]])
        lines.append(f"  {row['ts']:%Y-%m-%d %H:%M}  {item:<10} {opened.title(item)}  (weight {row['weight']:g})")
    return lines


def _model_line(opened: OpenedRun) -> str:
    fitted = opened.rec.model
    why = f" ({opened.published_why})" if opened.published_why else ""
    if fitted.published != "ranker":
        return (f"ranked by {fitted.published}, not the ranker: the guard published {fitted.published}{why}; "
                f"scores are {fitted.published}'s own, without per-feature contributions")
    if not hasattr(fitted.ranker, "contributions"):
        return f"ranked by the {fitted.cfg.ranker.kind} ranker{why}: it gives no per-feature contributions"
    return f"ranked by the LightGBM ranker{why}; why = its largest per-feature contributions to the score"


def _item_lines(opened: OpenedRun, item: Recommended) -> list[str]:
    fitted, item_id = opened.rec.model, str(opened.rec.item_ids[item.item_idx])
    head = f"{item.rank:>4}. {item_id:<10} {item.score:>9.4f}  {opened.title(item_id)}"
    if item.placed_by == NEW_ITEM_SLOT:
        head += f"  [new-item slot: reserved for an item without history, scored by {fitted.new_item_scorer}]"
    found = ", ".join(item.found_by) or "no block's candidate depth"
    if item.found_new:
        found += f"; among new items: {', '.join(item.found_new)}"
    if item.placed_by == FALLBACK:
        found = "popularity (the user has no history in this run)"
    lines = [head, f"      found by: {found}"]
    if item.contributions is not None:
        lines.append(f"      why: {describe(item.contributions, opened.rec.model.ranker.feature_names_)}")
    return lines


def format_recs(opened: OpenedRun, user_id: str, k: int, *, ranker: bool = False) -> str:
    """``ranker``: the saved ranker's list and contributions even where the guard published a source (what the
    ranker would have served, not what topk.parquet holds)."""
    user = position(opened.rec.user_ids, user_id, "user", opened.path, "users.parquet")
    if ranker and opened.rec.model.published != "ranker":
        guard_chose = opened.rec.model.published
        opened.rec.model = replace(opened.rec.model, published="ranker")
        opened.metrics = {"production": {"published": {"why": f"--ranker: not published, the guard chose "
                                                              f"{guard_chose}; topk.parquet holds {guard_chose}'s"}}}
    items = user_recommendations(opened, user, k)
    lines = [f"run {opened.path.name}, user {user_id}", *history_lines(opened, user), "",
             f"top {k} for {user_id}: " + (_model_line(opened) if not items or items[0].placed_by != FALLBACK
                                          else "the popularity fallback (no history for this user)"),
             "rank  item            score  title"]
    for item in items:
        lines.extend(_item_lines(opened, item))
    return "\n".join(lines)
