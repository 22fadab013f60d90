"""Same-run, same-split evaluation of the full model against its baselines: tables, paired differences, and
how many users and positives every figure rests on (fewer users than `train.eval.min_users` is flagged)."""

from __future__ import annotations

import logging

import numpy as np

from ranker.evaluation.metrics import EvalResult, evaluate_topk, paired_difference

log = logging.getLogger(__name__)
TABLE_METRICS = ("ndcg@10", "ndcg@20", "recall@10", "recall@20", "map@10", "hitrate@10", "coverage@10",
                 "diversity@10", "novelty@10")
# report name -> score block: the same-run baselines every table shows
BASELINES = {"popularity": "pop", "item_knn": "knn", "als": "als", "ease": "ease", "content": "content"}


def score_lists(lists: dict[str, np.ndarray], relevant: list[np.ndarray], *, ks, n_items: int,
                item_vectors: np.ndarray | None = None, popularity: np.ndarray | None = None,
                cold_items: np.ndarray | None = None) -> dict[str, EvalResult]:
    return {name: evaluate_topk(idx, relevant, ks=ks, n_items=n_items, item_vectors=item_vectors,
                                item_popularity=popularity, cold_items=cold_items)
            for name, idx in lists.items()}


def summaries(results: dict[str, EvalResult], relevant: list[np.ndarray]) -> dict[str, dict]:
    positives = int(sum(r.size for r in relevant))
    out = {}
    for name, result in results.items():
        row = result.summary()
        row["positives"] = float(sum(relevant[i].size for i in result.user_pos)) if len(result.user_pos) else 0.0
        out[name] = row
    log.debug("scored %d models on %d positives", len(out), positives)
    return out


def best_content(results: dict[str, EvalResult], metric: str = "ndcg@20") -> str:
    names = [n for n in results if n.startswith("content")]
    return max(names, key=lambda n: results[n].summary()[metric])


def paired(results: dict[str, EvalResult], full: str, against: list[str], metrics=("ndcg@10", "ndcg@20")) -> dict:
    """``full`` minus each reference, per user on the same users, with the standard error of the difference."""
    out = {}
    for name in against:
        if name not in results or name == full:
            continue
        for metric in metrics:
            mean, stderr = paired_difference(results[full].per_user[metric], results[name].per_user[metric])
            out[f"{full}-{name}/{metric}"] = {
                "mean": mean, "stderr": stderr, "users": results[full].n_users,
                "significant": bool(abs(mean) > 2 * stderr) if np.isfinite(stderr) else False}
    return out


def reliability(name: str, n_users: int, min_users: int) -> dict:
    reliable = n_users >= min_users
    if not reliable:
        log.warning("%s rests on %d users, fewer than train.eval.min_users=%d: treat it as unreliable",
                    name, n_users, min_users)
    return {"users": int(n_users), "min_users": int(min_users), "reliable": reliable}


def format_table(title: str, table: dict[str, dict], metrics=TABLE_METRICS, cold: bool = True,
                 min_users: int = 200) -> str:
    cols = [m for m in metrics if any(m in row for row in table.values())]
    if cold:
        cols += [f"cold/{m}" for m in ("recall@20", "ndcg@10") if any(f"cold/{m}" in r for r in table.values())]
    head = f"{'model':<16}" + "".join(f"{c:>18}" for c in cols) + f"{'users':>7}{'positives':>10}"
    users = max((int(row.get("n_users", 0)) for row in table.values()), default=0)
    flag = "" if users >= min_users else f"  [UNRELIABLE: {users} users < {min_users}]"
    lines = [title + flag, head, "-" * len(head)]
    for name, row in table.items():
        cells = []
        for c in cols:
            value, err = row.get(c, float("nan")), row.get(f"{c}_stderr")
            cells.append(f"{value:.4f}±{err:.4f}" if err is not None and np.isfinite(err) else f"{value:.4f}")
        lines.append(f"{name:<16}" + "".join(f"{c:>18}" for c in cells) + f"{int(row.get('n_users', 0)):>7}"
                     + f"{int(row.get('positives', 0)):>10}")
    return "\n".join(lines)


def format_paired(name: str, block: dict) -> list[str]:
    return [f"{name:<22} {key:<36} {d['mean']:+.4f} ± {d['stderr']:.4f}  ({d['users']} users)"
            f"{'  *' if d['significant'] else ''}" for key, d in block.items()]
