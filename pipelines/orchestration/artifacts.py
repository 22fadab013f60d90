"""What a flow run shows in the Prefect UI besides its tasks: the train run's headline metrics (a table) and
what it published (markdown), and the extraction summary per modality (a table).

Called only from the Prefect flows, never under `--engine local`. The rows and the text are plain functions so
that they are tested without a Prefect server. Keys are lowercase letters, digits and dashes (Prefect's rule); a
key groups the same artifact across runs, newest first, in the UI's Artifacts page.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

log = logging.getLogger(__name__)

TRAIN_METRICS_KEY = "train-metrics"
TRAIN_RUN_KEY = "train-run"
EXTRACT_SUMMARY_KEY = "extract-summary"
HEADLINE = ("ndcg@10", "ndcg@20")


def _number(value: Any, digits: int = 4) -> float | None:
    """Rounded for the table; NaN (a metric on no user) becomes empty, which JSON can carry."""
    if value is None or not math.isfinite(float(value)):
        return None
    return round(float(value), digits)


def train_metrics_rows(metrics: dict) -> list[dict[str, Any]]:
    """One row per (protocol, model): NDCG@10 and @20 with their standard errors and the users they rest on.
    Empty when the test protocols did not run this time (train.eval.every)."""
    tables = []
    if "temporal" in metrics:
        tables.append(("temporal", metrics["temporal"]["table"]))
    if metrics.get("item_cold"):
        tables += [("item-cold held-out", metrics["item_cold"]["held_out"]["table"]),
                   ("item-cold all items", metrics["item_cold"]["all_items"]["table"])]
    rows = []
    for protocol, table in tables:
        for model, row in table.items():
            cells = {"protocol": protocol, "model": model}
            for metric in HEADLINE:
                cells[metric] = _number(row.get(metric))
                cells[f"{metric} se"] = _number(row.get(f"{metric}_stderr"))
            cells["users"] = int(row.get("n_users", 0))
            rows.append(cells)
    return rows


def train_run_markdown(result: dict) -> str:
    """The published run: where it is, which model and why, what was (not) evaluated, and the files to open."""
    run = Path(result["run_dir"])
    metrics = result["metrics"]
    production, evaluation = metrics["production"], metrics.get("evaluation", {})
    published = production["published"]
    if evaluation.get("evaluated", "temporal" in metrics):
        evaluated = "yes: " + ", ".join(name for name in ("temporal", "item_cold") if metrics.get(name))
    else:
        evaluated = (f"no ({evaluation.get('why', '')}); last evaluated run: "
                     f"{evaluation.get('last_evaluated_run') or 'none'}")
    lines = [f"# Train run `{run.name}`", "",
             f"- **run folder**: `{run}` (now behind `latest`)",
             f"- **report**: `{run / 'report.html'}` (text: `{run / 'report.txt'}`)",
             f"- **published model**: {published['model']}: {published['why']}",
             f"- **new items**: scored by {published['new_item_scorer']}, reserved list positions "
             f"{published['new_item_positions']}",
             f"- **lists**: {production['users']} users ({production['fallback_users']} on the popularity "
             f"fallback), {production['new_items']} items without history, index {production['index_kind']}",
             f"- **weights read as**: {metrics['weight_kind']}",
             f"- **test protocols run**: {evaluated}",
             f"- **wall time**: {result['wall_s']} s", "",
             "Files: `topk.parquet`, `similar_items.parquet`, `fused_items.parquet`, `index.faiss`, `metrics.json`, "
             "`manifest.json`."]
    return "\n".join(lines)


def extract_summary_rows(report: dict) -> list[dict[str, Any]]:
    """One row per modality: what was embedded, skipped as unchanged, failed (by kind), and how fast."""
    rows = []
    for s in report["modalities"]:
        failed = s.get("failed", {})
        rows.append({"modality": s["modality"], "extractor": s["extractor"], "total": s["total"],
                     "embedded": s["embedded"], "unchanged": s["unchanged"], "known failures": s["known_failed"],
                     "failed": sum(failed.values()),
                     "failed by kind": ", ".join(f"{k}={v}" for k, v in sorted(failed.items())) or "none",
                     "items/s": _number(s.get("items_per_s"), 2), "wall s": s["wall_s"]})
    return rows


def publish_train_artifacts(result: dict) -> None:
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    name = Path(result["run_dir"]).name
    rows = train_metrics_rows(result["metrics"])
    with _not_fatal(name):
        if rows:  # a run that skipped the test protocols keeps the last evaluated table as the newest one
            create_table_artifact(rows, key=TRAIN_METRICS_KEY,
                                  description=f"Headline metrics of run {name} (same split, same users per protocol)")
        create_markdown_artifact(train_run_markdown(result), key=TRAIN_RUN_KEY, description=f"Published run {name}")


def publish_extract_artifacts(report: dict) -> None:
    from prefect.artifacts import create_table_artifact

    with _not_fatal("the extraction"):
        create_table_artifact(extract_summary_rows(report), key=EXTRACT_SUMMARY_KEY, description=(
            f"Extraction of {report['catalog_items']} catalog items in {report['wall_s']} s"))


@contextmanager
def _not_fatal(what: str) -> Iterator[None]:
    """The work is already published when artifacts are written: a Prefect API failing now costs the UI its
    summary, not the run its success."""
    try:
        yield
    except httpx.HTTPError as exc:
        log.warning("Prefect artifacts of %s not written: %s. The run itself is complete; its files hold the same "
                    "figures. Fix: check that the Prefect server at PREFECT_API_URL answers.", what, exc)
