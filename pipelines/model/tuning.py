"""Hyper-parameter studies on the validation split (Optuna TPE), within one time budget for the whole run.

Every study first tries the configured values (so tuning never does worse than the defaults on validation),
then `train.tune.trials - 1` TPE trials, stopping early when the run's budget is spent. A study that ran out
of time says so in the log and in its saved record; a budget cut makes the choice depend on the machine's
speed, so the record also holds how many trials ran.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import optuna
import polars as pl

from ranker.evaluation.metrics import evaluate_topk
from ranker.retrieval.blocks import BlockPlan, blocked_mask, score_blocks
from ranker.retrieval.feedback import MAPPINGS, Feedback
from ranker.retrieval.sources import HistoryContext, make_source

log = logging.getLogger(__name__)
optuna.logging.set_verbosity(optuna.logging.WARNING)


@dataclass
class Budget:
    seconds: float
    started: float = field(default_factory=time.perf_counter)

    def remaining(self) -> float:
        return max(0.0, self.seconds - (time.perf_counter() - self.started))


def run_study(name: str, objective: Callable[[optuna.Trial], float], defaults: dict, *, trials: int,
              budget: Budget, seed: int) -> tuple[dict, dict]:
    """Maximise ``objective``; returns the best parameters and the study's record (every trial)."""
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.enqueue_trial(defaults, skip_if_exists=True)
    started = time.perf_counter()
    # the configured values always run, even on a spent budget: they are the fallback
    study.optimize(objective, n_trials=1)
    if trials > 1 and budget.remaining() > 0:
        study.optimize(objective, n_trials=trials - 1, timeout=budget.remaining())
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    cut = len(study.trials) < trials
    best = max(done, key=lambda t: (t.value, -t.number))
    record = {"best_params": best.params, "best_value": best.value, "default_value": done[0].value,
              "best_attrs": dict(best.user_attrs),
              "trials": [{"number": t.number, "params": t.params, "value": t.value,
                          "seconds": round(t.duration.total_seconds(), 2) if t.duration else None} for t in done],
              "seconds": round(time.perf_counter() - started, 2), "budget_cut": cut}
    log.info("tuned %s: validation %.4f (defaults %.4f) with %s, %d trials%s", name, best.value,
             done[0].value, best.params, len(done), " (stopped by train.tune.seconds)" if cut else "")
    return dict(best.params), record


class SourceValidation:
    """Validation NDCG@k of one source alone: fitted on the history, ranking each user's available items."""

    def __init__(self, history: pl.DataFrame, labels: pl.DataFrame, cutoff_us: np.ndarray, *, n_users: int,
                 n_items: int, item_vectors: dict, weight_kind: str, k: int, threads: int) -> None:
        self.history, self.n_users, self.n_items = history, n_users, n_items
        self.item_vectors, self.weight_kind, self.k, self.threads = item_vectors, weight_kind, k, threads
        self.feedback = Feedback.from_interactions(history, weight_kind, n_users)
        self.cutoff_us = cutoff_us
        self.item_first_us = _first_us(history, n_items)
        self.users, self.relevant = relevant_items(history, labels)
        self._contexts: dict[float, HistoryContext] = {}

    def context(self, half_life: float) -> HistoryContext:
        if half_life not in self._contexts:
            self._contexts[half_life] = HistoryContext(self.history, self.feedback, self.n_users, self.n_items,
                                                       self.item_vectors, half_life, self.threads, keep_counts=True)
        return self._contexts[half_life]

    def ndcg(self, source: str, params: dict, half_life: float, block: str) -> float:
        ctx = self.context(half_life)
        fitted = make_source(source, params).fit(ctx)
        seen = ctx.matrix("binary")
        result = score_blocks(lambda users: {block: fitted.score(users)[block]}, self.users,
                              lambda users: blocked_mask(seen[users], self.cutoff_us[users], self.item_first_us),
                              BlockPlan({}, list_k=self.k))
        scores = evaluate_topk(result.lists[block], self.relevant, ks=(self.k,), n_items=self.n_items)
        return float(scores.summary()[f"ndcg@{self.k}"])


def _first_us(history: pl.DataFrame, n_items: int) -> np.ndarray:
    out = np.full(n_items, np.iinfo(np.int64).max, dtype=np.int64)
    first = history.group_by("item_idx").agg(pl.col("ts").dt.epoch("us").min())
    out[first["item_idx"].to_numpy()] = first["ts"].to_numpy()
    return out


def relevant_items(history: pl.DataFrame, labels: pl.DataFrame) -> tuple[np.ndarray, list[np.ndarray]]:
    """Users with some history and a labelled item not in it (users without one carry no signal), and those
    items per user."""
    fresh = labels.select("user_idx", "item_idx").unique().join(
        history.select("user_idx", "item_idx").unique(), on=["user_idx", "item_idx"], how="anti")
    fresh = fresh.filter(pl.col("user_idx").is_in(history["user_idx"].unique().implode()))
    grouped = fresh.group_by("user_idx").agg(pl.col("item_idx").sort()).sort("user_idx")
    return (grouped["user_idx"].to_numpy().astype(np.int64),
            [np.asarray(items, dtype=np.int64) for items in grouped["item_idx"].to_list()])


SEARCH_SPACES: dict[str, Callable] = {
    "ease": lambda t, kind: {"l2": t.suggest_float("l2", 5.0, 5000.0, log=True),
                             "mapping": t.suggest_categorical("mapping", list(MAPPINGS[kind]))},
    "als": lambda t, kind: {"factors": t.suggest_int("factors", 16, 256, log=True),
                            "regularization": t.suggest_float("regularization", 1e-3, 10.0, log=True),
                            "alpha": t.suggest_float("alpha", 0.5, 100.0, log=True),
                            "iterations": t.suggest_int("iterations", 5, 30),
                            "mapping": t.suggest_categorical("mapping", list(MAPPINGS[kind]))},
    "knn": lambda t, kind: {"shrinkage": t.suggest_float("shrinkage", 0.0, 100.0),
                            "neighbors": t.suggest_int("neighbors", 20, 1000, log=True)},
    "seq": lambda t, kind: {"window": t.suggest_int("window", 2, 50, log=True),
                            "half_life": t.suggest_float("half_life", 1.0, 50.0, log=True)},
}
MAIN_BLOCK = {"ease": "ease", "als": "als", "knn": "knn", "seq": "seq"}


def tune_sources(validation: SourceValidation, base, *, trials: int, budget: Budget, seed: int,
                 studies_after: int = 0):
    """Tune EASE, ALS, item-kNN and the sequence source (with the recency half-life) one after the other.

    Each study gets an equal share of what is left of the budget, counting ``studies_after`` more to come.
    Returns the updated SourceParams and every study's record.
    """
    params, records = base, {}
    names = [n for n in MAIN_BLOCK if n in base.params]
    for position, name in enumerate(names):
        share = Budget(budget.remaining() / (len(names) - position + studies_after))
        space = SEARCH_SPACES[name]
        current = params

        def objective(trial: optuna.Trial, name=name, current=current, space=space) -> float:
            proposed = space(trial, validation.weight_kind)
            half_life = proposed.pop("half_life", current.half_life)
            return validation.ndcg(name, {**current.params[name], **proposed}, half_life, MAIN_BLOCK[name])

        defaults = {key: value for key, value in {**current.params[name], "half_life": current.half_life}.items()
                    if key in space_keys(space, validation.weight_kind)}
        best, records[name] = run_study(name, objective, defaults, trials=trials, budget=share, seed=seed)
        records[name].update(users=int(len(validation.users)),
                             positives=int(sum(r.size for r in validation.relevant)))
        half_life = best.pop("half_life", current.half_life)
        params = type(current)({**current.params, name: {**current.params[name], **best}}, half_life)
    return params, records


def space_keys(space: Callable, *args) -> set[str]:
    """The parameter names a search space suggests, read by running it on a recording trial."""
    names: set[str] = set()

    class Recorder:
        def __getattr__(self, _):
            def suggest(key, *values, **_):
                names.add(key)
                return values[0][0] if isinstance(values[0], (list, tuple)) else values[0]
            return suggest

    space(Recorder(), *args)
    return names
