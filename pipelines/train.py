"""`make train`: the test protocols, then the production model on all interactions, published atomically."""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

import numpy as np
import polars as pl
from prefect import flow

from pipelines.config import PipelineConfig
from pipelines.parquet_io import write_parquet_atomic
from pipelines.procedure import Catalog, Fitted, refit_serving
from pipelines.protocols import item_cold_protocol, temporal_protocol
from pipelines.publish import package_versions, similar_items, write_json, write_source_models, write_space
from pipelines.recommend import Lists, recommend
from pipelines.report import decision, format_report
from pipelines.store import Store, utc_now
from pipelines.train_data import TrainInputs, load_train_inputs
from pipelines.tuning import Budget
from ranker.feedback import detect_weight_kind
from ranker.index import ItemIndex

log = logging.getLogger(__name__)
TOPK_SCHEMA = {"user_id": pl.String, "rank": pl.Int32, "item_id": pl.String, "score": pl.Float32, "source": pl.String}


def resolve_weight_kind(configured: str, weights: np.ndarray) -> str:
    if configured != "auto":
        log.info("weight column read as %s (train.weight_kind)", configured)
        return configured
    kind, why = detect_weight_kind(weights)
    log.info("weight column read as %s: %s (set train.weight_kind to override)", kind, why)
    return kind


def _list_rows(inputs: TrainInputs, lists: Lists) -> pl.DataFrame:
    rows, ranks = np.nonzero(lists.idx >= 0)
    return pl.DataFrame({"user_id": inputs.user_ids[lists.users[rows]].astype(str),
                         "rank": (ranks + 1).astype(np.int32),
                         "item_id": inputs.item_ids[lists.idx[rows, ranks]].astype(str), "score": lists.scores[rows, ranks].astype(np.float32),
                         "source": lists.source[rows, ranks].astype(str)})


def topk_frame(inputs: TrainInputs, production: Fitted, k: int) -> pl.DataFrame:
    """The published model's lists for users with history; popularity, flagged `popularity_fallback`, for users
    whose every interaction names an unknown item."""
    warm = np.unique(inputs.interactions["user_idx"].to_numpy())
    result = production.level.run(warm, production.plan(k))
    frame = _list_rows(inputs, recommend(production, result, warm, k))
    cold = np.setdiff1d(np.arange(len(inputs.user_ids)), warm)
    if cold.size:
        popularity = production.level.sources["pop"].popularity
        top = np.lexsort((np.arange(len(popularity)), -popularity))[:k]
        top = top[popularity[top] > 0]
        frame = pl.concat([frame, pl.DataFrame({
            "user_id": np.repeat(inputs.user_ids[cold], len(top)).astype(str),
            "rank": np.tile(np.arange(1, len(top) + 1, dtype=np.int32), cold.size),
            "item_id": np.tile(inputs.item_ids[top], cold.size).astype(str), "score": np.tile(popularity[top], cold.size).astype(np.float32),
            "source": "popularity_fallback"})])
    return frame.select(list(TOPK_SCHEMA)).cast(TOPK_SCHEMA).sort("user_id", "rank")


def publish_production(inputs: TrainInputs, production: Fitted, run: Path) -> dict:
    cfg = production.cfg
    frame = topk_frame(inputs, production, cfg.top_k)
    write_parquet_atomic(frame, run / "topk.parquet")
    index = ItemIndex.build(production.space.fused, kind="auto", seed=cfg.seed)
    write_space(run, production.space, index)
    write_parquet_atomic(similar_items(inputs.item_ids, production.space.fused, index, cfg.similar_k),
                         run / "similar_items.parquet")
    production.ranker.save(run / "ranker")
    write_source_models(run, production.level.sources)
    new = ~production.level.ctx.item_has_history
    slots = frame.filter(pl.col("source") == "new_item_slot")
    return {"published": decision(production), "users": len(inputs.user_ids),
            "fallback_users": frame.filter(pl.col("source") == "popularity_fallback")["user_id"].n_unique(),
            "new_items": int(new.sum()), "topk_rows_new_item_slot": slots.height,
            "users_with_new_items": slots["user_id"].n_unique(), "index_kind": index.kind,
            "tuned": {"sources": production.tuned.sources.params, "half_life": production.tuned.sources.half_life,
                      "fusion_weights": production.tuned.fusion_weights, "ranker": production.tuned.ranker_params}}


def run_training(cfg: PipelineConfig) -> dict:
    store = Store(Path(cfg.store.root))
    with store.lock("train"):
        return _train_and_publish(cfg, store)


def _train_and_publish(cfg: PipelineConfig, store: Store) -> dict:
    started = time.perf_counter()
    inputs = load_train_inputs(cfg)
    weight_kind = resolve_weight_kind(cfg.train.weight_kind, inputs.interactions["weight"].to_numpy())
    catalog = Catalog(inputs.item_ids, inputs.tables, len(inputs.user_ids))
    budget = Budget(cfg.train.tune.seconds)
    temporal, fitted = temporal_protocol(inputs.interactions, catalog, cfg.train, weight_kind, budget)
    metrics, timings = {"weight_kind": weight_kind, "temporal": temporal}, {"temporal_s": temporal["seconds"]}
    if cfg.train.item_cold.enabled:
        metrics["item_cold"] = item_cold_protocol(inputs.interactions, catalog, cfg.train, weight_kind, fitted.tuned)
        timings["item_cold_s"] = metrics["item_cold"]["seconds"]
    run = store.new_run_dir()
    try:
        t0 = time.perf_counter()
        production = refit_serving(fitted, inputs.interactions, catalog)
        metrics["production"] = publish_production(inputs, production, run)
        timings["production_s"] = round(time.perf_counter() - t0, 2)
        report = format_report(metrics)
        print(report)
        (run / "report.txt").write_text(report + "\n")
        write_json(run, "metrics.json", metrics)
        timings["total_s"] = round(time.perf_counter() - started, 2)
        write_json(run, "manifest.json", _manifest(cfg, inputs, timings, metrics))
        final = store.publish(run)
    except BaseException:
        shutil.rmtree(run, ignore_errors=True)  # a failed run leaves no half folder; `latest` is untouched
        raise
    log.info("published %s in %.1fs", final, timings["total_s"])
    prune_runs(store, cfg.store.keep_runs)
    return {"run_dir": str(final), "wall_s": timings["total_s"], "metrics": metrics}


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
                       "modalities": {m: int(len(ids)) for m, (ids, _) in inputs.tables.items()}},
            "packages": package_versions()}


@flow(name="train", log_prints=True)
def train_flow_body(cfg: PipelineConfig) -> dict:
    return run_training(cfg)


def train_flow(cfg: PipelineConfig) -> dict:
    return train_flow_body(cfg)
