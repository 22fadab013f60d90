"""`make train`: both evaluation protocols, then the production fit on all interactions, published atomically."""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

import numpy as np
import polars as pl
from prefect import flow

from pipelines.config import PipelineConfig
from pipelines.evaluate import format_table, full_model_ranking
from pipelines.protocols import fit_protocol, item_cold_protocol, temporal_protocol
from pipelines.publish import package_versions, similar_items, write_history_models, write_json, write_space
from pipelines.parquet_io import write_parquet_atomic
from pipelines.store import Store, utc_now
from pipelines.train_data import TrainInputs, load_train_inputs
from ranker.candidates import popularity_topk

log = logging.getLogger(__name__)
TOPK_SCHEMA = {"user_id": pl.String, "rank": pl.Int32, "item_id": pl.String, "score": pl.Float32, "source": pl.String}


def _list_rows(user_id: str, item_ids: np.ndarray, idx: np.ndarray, scores: np.ndarray, source: str, k: int,
               taken: list | None = None) -> list[tuple]:
    start = len(taken or [])
    rows = [(user_id, start + r + 1, item_ids[i], float(s), source)
            for r, (i, s) in enumerate([(i, s) for i, s in zip(idx, scores) if i >= 0][: k - start])]
    return (taken or []) + rows


def topk_frame(inputs: TrainInputs, ranked: tuple, warm: np.ndarray, popular: tuple, k: int) -> pl.DataFrame:
    """Ranker lists for users with history (topped up with popular unseen items when short); popularity,
    flagged `popularity_fallback`, for users without any usable history."""
    rows: list[tuple] = []
    ranked_row = {int(u): r for r, u in enumerate(warm)}
    for u, user_id in enumerate(inputs.user_ids):
        r = ranked_row.get(u)
        if r is None:
            rows += _list_rows(user_id, inputs.item_ids, popular[0][u], popular[1][u], "popularity_fallback", k)
            continue
        mine = _list_rows(user_id, inputs.item_ids, ranked[0][r], ranked[1][r], "ranker", k)
        chosen = {row[2] for row in mine}
        extra = [(i, s) for i, s in zip(popular[0][u], popular[1][u]) if i >= 0 and inputs.item_ids[i] not in chosen]
        if extra and len(mine) < k:
            mine = _list_rows(user_id, inputs.item_ids, *map(np.array, zip(*extra)), "popularity_topup", k, mine)
        rows += mine
    return pl.DataFrame(rows, schema=TOPK_SCHEMA, orient="row")


def production_fit(inputs: TrainInputs, cfg: PipelineConfig, run: Path) -> dict:
    tcfg = cfg.train
    space, ranker, info, history = fit_protocol(inputs, inputs.interactions, tcfg)
    warm = np.unique(inputs.interactions["user_idx"].to_numpy())
    ranked = full_model_ranking(ranker, history, space, tcfg, warm, tcfg.top_k)
    popular = popularity_topk(history.interactions, n_items=space.n_items, user_idx=np.arange(len(inputs.user_ids)),
                              k=2 * tcfg.top_k, exclude=history.seen)  # spare items for topping up
    frame = topk_frame(inputs, ranked, warm, popular, tcfg.top_k)
    write_parquet_atomic(frame, run / "topk.parquet")
    ranker.save(run / "ranker")
    write_space(run, space)
    write_history_models(run, history)
    write_parquet_atomic(similar_items(space, tcfg.similar_k), run / "similar_items.parquet")
    new_ids = inputs.item_ids[~history.warm_items].tolist()
    with_new = frame.filter(pl.col("item_id").is_in(new_ids) & (pl.col("source") == "ranker"))
    return {"ranker": info, "users": len(inputs.user_ids), "fallback_users": int(len(inputs.user_ids) - len(warm)),
            "new_items": len(new_ids), "topk_rows_with_new_items": with_new.height,
            "users_with_new_items": with_new["user_id"].n_unique(), "index_kind": space.index.kind,
            "index_recall_at_10": space.index_recall_at_10,
            "content_map": history.content_map_report}


def print_report(metrics: dict) -> str:
    tables = [format_table("temporal protocol (test after the cutoff; cold/ = items unseen before it)",
                           metrics["temporal"]["table"])]
    diffs = [("temporal", metrics["temporal"]["paired"])]
    if metrics.get("item_cold"):
        ic = metrics["item_cold"]
        tables.append(format_table("item-cold protocol: ranking the held-out items", ic["held_out"]["table"], cold=False))
        tables.append(format_table("item-cold protocol: ranking all items", ic["all_items"]["table"], cold=False))
        diffs += [("item-cold held-out", ic["held_out"]["paired"]), ("item-cold all", ic["all_items"]["paired"])]
    lines = [f"{name:<18} {key:<32} {d['mean']:+.4f} ± {d['stderr']:.4f}{'  *' if d['significant'] else ''}"
             for name, block in diffs for key, d in block.items()]
    text = ("\n\n".join(tables) + "\n\npaired differences (full model minus reference, per user; "
            "* = beyond 2 standard errors)\n" + "\n".join(lines))
    print(text)
    return text


def run_training(cfg: PipelineConfig) -> dict:
    store = Store(Path(cfg.store.root))
    with store.lock("train"):
        return _train_and_publish(cfg, store)


def _train_and_publish(cfg: PipelineConfig, store: Store) -> dict:
    started = time.perf_counter()
    inputs = load_train_inputs(cfg)
    timings = {}
    metrics = {"temporal": temporal_protocol(inputs, cfg.train)}
    timings["temporal_s"] = metrics["temporal"]["seconds"]
    if cfg.train.item_cold.enabled:
        metrics["item_cold"] = item_cold_protocol(inputs, cfg.train)
        timings["item_cold_s"] = metrics["item_cold"]["seconds"]
    run = store.new_run_dir()
    try:
        t0 = time.perf_counter()
        metrics["production"] = production_fit(inputs, cfg, run)
        timings["production_s"] = round(time.perf_counter() - t0, 2)
        report = print_report(metrics)
        (run / "report.txt").write_text(report + "\n")
        write_json(run, "metrics.json", metrics)
        timings["total_s"] = round(time.perf_counter() - started, 2)
        write_json(run, "manifest.json", _manifest(cfg, inputs, timings))
        final = store.publish(run)
    except BaseException:
        shutil.rmtree(run, ignore_errors=True)  # a failed run leaves no half folder; `latest` is untouched
        raise
    log.info("published %s in %.1fs", final, timings["total_s"])
    return {"run_dir": str(final), "wall_s": timings["total_s"], "metrics": metrics}


def _manifest(cfg: PipelineConfig, inputs: TrainInputs, timings: dict) -> dict:
    return {"finished_at": utc_now().isoformat(), "config": cfg.model_dump(mode="json"), "timings": timings,
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
