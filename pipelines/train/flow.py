"""`make train`: the test protocols, then the production model on all interactions, published atomically."""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from prefect import flow

from pipelines.config import PipelineConfig
from pipelines.model.procedure import Catalog
from pipelines.model.recommender import Recommender
from pipelines.model.stages import stage, stages_run_by
from pipelines.model.tuning import Budget
from pipelines.orchestration.artifacts import publish_train_artifacts
from pipelines.orchestration.steps import run_as_task
from pipelines.report_html import write_report_html
from pipelines.store.layout import Store, utc_now
from pipelines.train.inputs import TrainInputs, load_train_inputs
from pipelines.train.protocols import item_cold_protocol, temporal_protocol
from pipelines.train.publish import package_versions, publish_production, write_json
from pipelines.train.report import format_report
from ranker.retrieval.feedback import detect_weight_kind

log = logging.getLogger(__name__)


def resolve_weight_kind(configured: str, weights: np.ndarray) -> str:
    if configured != "auto":
        log.info("weight column read as %s (train.weight_kind)", configured)
        return configured
    kind, why = detect_weight_kind(weights)
    log.info("weight column read as %s: %s (set train.weight_kind to override)", kind, why)
    return kind


def load_inputs(cfg: PipelineConfig) -> tuple[TrainInputs, str]:
    """Step `load-inputs`: the current vectors and the interactions, and how the weight column is read."""
    inputs = load_train_inputs(cfg)
    return inputs, resolve_weight_kind(cfg.train.weight_kind, inputs.interactions["weight"].to_numpy())


def fit_production(cfg: PipelineConfig, inputs: TrainInputs, catalog: Catalog, weight_kind: str, budget: Budget,
                   tested: Recommender | None) -> Recommender:
    """Step `fit-production`: the model published, fitted on every interaction."""
    if tested is not None:  # the tested model, its sources refitted on everything
        return tested.refit(inputs.interactions, catalog)
    # the same procedure (fuse, candidate sources, tuning, ranker, guard on validation) on everything
    return Recommender.fit(inputs.interactions, catalog, cfg.train, weight_kind, budget=budget)


def run_training(cfg: PipelineConfig, run_step: Callable[..., Any] | None = None) -> dict:
    """The training run; `run_step(name, fn, *args)` runs each named step and the fit procedure's stages within
    them (plain calls by default, Prefect tasks in `train_flow`)."""
    store = Store(Path(cfg.store.root))
    # under Prefect, every step is a task, and the fit procedure's own stages (tune, fuse, ...) tasks nested in it
    with store.lock("train"), stages_run_by(run_step):
        return _train_and_publish(cfg, store)


def _train_and_publish(cfg: PipelineConfig, store: Store) -> dict:
    started = time.perf_counter()
    inputs, weight_kind = stage("load-inputs", load_inputs, cfg)
    catalog = Catalog(inputs.item_ids, inputs.tables, inputs.user_ids)
    budget = Budget(cfg.train.tune.seconds)
    metrics, timings = {"weight_kind": weight_kind}, {}
    evaluate, metrics["evaluation"] = evaluation_due(store, cfg.train.eval.every)
    tested = None
    if evaluate:
        metrics["temporal"], tested = stage("evaluate-temporal", temporal_protocol, inputs.interactions, catalog,
                                            cfg.train, weight_kind, budget)
        timings["temporal_s"] = metrics["temporal"]["seconds"]
        if cfg.train.item_cold.enabled:
            metrics["item_cold"] = stage("evaluate-item-cold", item_cold_protocol, inputs.interactions, catalog,
                                         cfg.train, weight_kind, tested.model.tuned)
            timings["item_cold_s"] = metrics["item_cold"]["seconds"]
    else:
        log.info("test protocols skipped: %s", metrics["evaluation"]["why"])
    run = store.new_run_dir()
    try:
        t0 = time.perf_counter()
        production = stage("fit-production", fit_production, cfg, inputs, catalog, weight_kind, budget, tested)
        metrics["production"] = stage("write-outputs", publish_production, production, run)
        timings["production_s"] = round(time.perf_counter() - t0, 2)
        final, timings["total_s"] = stage("publish-run", publish_run, cfg, store, run, inputs, metrics, timings,
                                          started)
    except BaseException:
        shutil.rmtree(run, ignore_errors=True)  # a failed run leaves no half folder; `latest` is untouched
        raise
    log.info("published %s in %.1fs", final, timings["total_s"])
    prune_runs(store, cfg.store.keep_runs)
    return {"run_dir": str(final), "wall_s": timings["total_s"], "metrics": metrics}


def publish_run(cfg: PipelineConfig, store: Store, run: Path, inputs: TrainInputs, metrics: dict, timings: dict,
                started: float) -> tuple[Path, float]:
    """Step `publish-run`: the reports (text, HTML) and JSON records into the hidden run folder, then the atomic
    publish."""
    report = format_report(metrics)
    print(report)
    (run / "report.txt").write_text(report + "\n")
    write_json(run, "metrics.json", metrics)
    total_s = round(time.perf_counter() - started, 2)
    write_json(run, "manifest.json", _manifest(cfg, inputs, {**timings, "total_s": total_s}, metrics))
    write_report_html(run, store.root, cfg.data.catalog)  # a section that fails is logged, never fatal
    return store.publish(run), total_s


def evaluation_due(store: Store, every: int) -> tuple[bool, dict]:
    """Whether this run runs the test protocols (train.eval.every), and why, naming the last evaluated run."""
    last = None
    published = []  # newest first (two runs can share a second: order by when their metrics were written)
    for run in store.runs_dir.glob("[0-9]*T*Z-*") if store.runs_dir.exists() else []:
        try:
            published.append(((run / "metrics.json").stat().st_mtime_ns, run))
        except OSError:
            continue
    since = 0
    for _, run in sorted(published, reverse=True):
        try:
            evaluated = json.loads((run / "metrics.json").read_text()).get("evaluation", {}).get("evaluated", True)
        except (OSError, ValueError):
            continue
        if evaluated:
            last = run.name
            break
        since += 1
    if every == 0:
        return False, {"evaluated": False, "why": "train.eval.every = 0 (never)", "last_evaluated_run": last}
    due = last is None or since + 1 >= every
    why = (f"train.eval.every = {every}: {since} run(s) published since the last evaluated one ({last})"
           if last else f"train.eval.every = {every}: no evaluated run yet")
    return due, {"evaluated": due, "why": why, "last_evaluated_run": last}


def prune_runs(store: Store, keep: int) -> None:
    """Retention once the new run is published; a failure (a full or read-only disk) is logged, not fatal: the
    run is already behind `latest`, and the next run prunes again."""
    try:
        store.prune_runs(keep)
    except OSError as exc:
        log.warning("retention (store.keep_runs=%d) skipped: %s. Fix: check the permissions and space of %s; the "
                    "next train prunes again.", keep, exc, store.runs_dir)


def _manifest(cfg: PipelineConfig, inputs: TrainInputs, timings: dict, metrics: dict) -> dict:
    return {"finished_at": utc_now().isoformat(), "config": cfg.model_dump(mode="json"), "timings": timings,
            "published": metrics["production"]["published"], "weight_kind": metrics["weight_kind"],
            "inputs": {"catalog": cfg.data.catalog, "catalog_sha256": inputs.catalog_sha256,
                       "interactions": cfg.data.interactions, "interactions_sha256": inputs.interactions_sha256,
                       "dropped_unknown_item_rows": inputs.dropped_unknown_items,
                       "modalities": {m: len(table) for m, table in inputs.tables.items()}},
            "packages": package_versions()}


@flow(name="train", log_prints=True)
def train_flow_body(cfg: PipelineConfig) -> dict:
    """Each step a Prefect task; the metrics and the published run as artifacts of this flow run."""
    result = run_training(cfg, run_step=run_as_task)
    publish_train_artifacts(result)
    return result


def train_flow(cfg: PipelineConfig) -> dict:
    return train_flow_body(cfg)
