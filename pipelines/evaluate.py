"""Same-run, same-split evaluation of the full model against its baselines, and the paired differences."""

from __future__ import annotations

import numpy as np
import polars as pl

from pipelines.modeling import History, ItemSpace
from pipelines.scoring import als_topk, candidates, chunked, dense_user_topk, features, topk_from_scores
from pipelines.train_config import TrainConfig
from ranker.candidates import content_topk, popularity_topk
from ranker.covisit import covisitation_topk
from ranker.metrics import EvalResult, evaluate_topk, paired_difference

TABLE_METRICS = ("ndcg@10", "recall@10", "recall@20", "map@10", "hitrate@10", "coverage@10", "diversity@10", "novelty@10")


def relevant_per_user(test: pl.DataFrame, history: History, users: np.ndarray) -> list[np.ndarray]:
    """Each user's test items that were not in their history (seen items are excluded from ranking)."""
    grouped = dict(test.group_by("user_idx").agg(pl.col("item_idx").unique()).iter_rows())
    out = []
    for u in users:
        items = np.asarray(grouped.get(int(u), []), dtype=np.int64)
        out.append(items[np.asarray(history.seen[int(u), items].todense()).ravel() == 0] if items.size else items)
    return out


def _rows_for(users: np.ndarray, ranked_users: np.ndarray, idx: np.ndarray, scores: np.ndarray):
    """Top-k rows aligned to `users` (users the model produced nothing for get an empty, -1 row)."""
    out = np.full((len(users), idx.shape[1]), -1, dtype=np.int64)
    out_scores = np.full((len(users), idx.shape[1]), -np.inf, dtype=np.float32)
    rows = np.searchsorted(ranked_users, users)
    found = (rows < len(ranked_users)) & (ranked_users[np.clip(rows, 0, len(ranked_users) - 1)] == users)
    out[found], out_scores[found] = idx[rows[found]], scores[rows[found]]
    return out, out_scores


def full_model_ranking(ranker, history: History, space: ItemSpace, cfg: TrainConfig, users: np.ndarray, k: int,
                       pairs: pl.DataFrame | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The full model's top-k (idx, scores) per user in `users` (sorted): candidates, features, ranker scores.
    Users are scored in chunks so the candidate table of a large user base never sits in memory at once."""
    def score_chunk(chunk: np.ndarray):
        chunk_pairs = (candidates(history, space, cfg, chunk) if pairs is None
                       else pairs.filter(pl.col("user_idx").is_in(chunk)))
        data = features(history, space, chunk_pairs)
        ranked_users, idx, scores = topk_from_scores(data, ranker.predict(data), k)
        return _rows_for(chunk, ranked_users, idx, scores)

    return chunked(users, score_chunk)


def full_model_topk(*args, **kwargs) -> np.ndarray:
    return full_model_ranking(*args, **kwargs)[0]


def baseline_topks(history: History, space: ItemSpace, users: np.ndarray, k: int) -> dict[str, np.ndarray]:
    seen = history.seen
    models = {
        "popularity": popularity_topk(history.interactions, n_items=space.n_items, user_idx=users, k=k, exclude=seen)[0],
        "item_knn": covisitation_topk(history.interactions, n_items=space.n_items, user_idx=users, k=k, exclude=seen,
                                      matrix=history.covis)[0],
        "als": als_topk(history, users, k, completed=False)[0],
        "content": content_topk(history.profiles["fused"], space.index.search, users, k, exclude=seen)[0],
    }
    for modality in space.aligned.modalities:
        models[f"content_{modality}"] = dense_user_topk(history.profiles[modality], space.aligned.blocks[modality],
                                                        users, k, seen)[0]
    return models


def score_models(topks: dict[str, np.ndarray], relevant: list[np.ndarray], history: History, space: ItemSpace,
                 cfg: TrainConfig, cold_items: np.ndarray | None) -> dict[str, EvalResult]:
    popularity = history.item_stats.sort("item_idx")["pop_all"].to_numpy()
    return {name: evaluate_topk(idx, relevant, ks=cfg.eval_ks, n_items=space.n_items, item_vectors=space.fused,
                                item_popularity=popularity, cold_items=cold_items)
            for name, idx in topks.items()}


def best_content(results: dict[str, EvalResult]) -> str:
    names = [n for n in results if n.startswith("content")]
    return max(names, key=lambda n: results[n].summary()["ndcg@10"])


def paired(results: dict[str, EvalResult], against: list[str], metrics=("ndcg@10", "recall@20")) -> dict:
    """Full model minus each reference, per user on the same users, with the standard error of the difference."""
    full = results["full"]
    out = {}
    for name in against:
        for metric in metrics:
            mean, stderr = paired_difference(full.per_user[metric], results[name].per_user[metric])
            out[f"full-{name}/{metric}"] = {"mean": mean, "stderr": stderr,
                                             "significant": bool(abs(mean) > 2 * stderr) if np.isfinite(stderr) else False}
    return out


def summaries(results: dict[str, EvalResult]) -> dict[str, dict]:
    return {name: result.summary() for name, result in results.items()}


def format_table(title: str, table: dict[str, dict], metrics=TABLE_METRICS, cold: bool = True) -> str:
    cols = [m for m in metrics if any(m in row for row in table.values())]
    if cold:
        cols += [f"cold/{m}" for m in ("recall@20", "ndcg@10") if any(f"cold/{m}" in r for r in table.values())]
    head = f"{'model':<16}" + "".join(f"{c:>18}" for c in cols) + f"{'users':>7}"
    lines = [title, head, "-" * len(head)]
    for name, row in table.items():
        cells = []
        for c in cols:
            value, err = row.get(c, float("nan")), row.get(f"{c}_stderr")
            cells.append(f"{value:.4f}±{err:.4f}" if err is not None and np.isfinite(err) else f"{value:.4f}")
        lines.append(f"{name:<16}" + "".join(f"{c:>18}" for c in cells) + f"{int(row.get('n_users', 0)):>7}")
    return "\n".join(lines)
