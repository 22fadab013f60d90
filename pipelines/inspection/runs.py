"""`python -m pipelines runs`: the store's published runs, oldest first, with the model each published, whether
its test protocols ran, the published lists' NDCG@20 on the temporal protocol (± standard error, users), the
best candidate source alone, and which run `latest` points to. Reads metrics.json only: nothing is loaded."""

from __future__ import annotations

from pathlib import Path

from pipelines.inspection.open_run import published_runs, read_json
from pipelines.store.layout import Store

METRIC = "ndcg@20"
NOT_BASELINES = ("full", "published")  # the ranker's and the published lists; every other row is one source


def _cell(row: dict | None) -> str:
    if not row or METRIC not in row:
        return "-"
    return f"{row[METRIC]:.4f} ± {row.get(f'{METRIC}_stderr', float('nan')):.4f} ({int(row.get('n_users', 0))} users)"


def run_summary(run: Path) -> dict[str, str]:
    """One run's row: published model, evaluated, published / ranker / best source on the temporal protocol."""
    metrics = read_json(run / "metrics.json")
    published = metrics.get("production", {}).get("published", {}).get("model", "?")
    evaluation = metrics.get("evaluation", {})
    table = metrics.get("temporal", {}).get("table", {})
    evaluated = "yes" if table else f"no (last evaluated: {evaluation.get('last_evaluated_run') or 'none'})"
    sources = {name: row for name, row in table.items() if name not in NOT_BASELINES and METRIC in row}
    best = max(sources, key=lambda name: sources[name][METRIC], default=None)
    loadable = (run / "recommender.json").is_file()
    return {"run": run.name, "published": published, "evaluated": evaluated,
            "published_ndcg": _cell(table.get("published")), "ranker_ndcg": _cell(table.get("full")),
            "best_source": "-" if best is None else f"{best} {sources[best][METRIC]:.4f}",
            "note": "" if loadable else "older format: recs/similar cannot load it"}


def format_runs(store: Store) -> str:
    runs = published_runs(store)
    if not runs:
        return f"no published run in {store.runs_dir}. Fix: run `make train` (same CONFIG) first."
    latest = store.latest.resolve().name if store.latest.exists() else None
    header = {"run": "run", "published": "published", "evaluated": "evaluated",
              "published_ndcg": f"published {METRIC} (temporal)", "ranker_ndcg": f"ranker {METRIC}",
              "best_source": f"best source {METRIC}", "note": ""}
    rows = [header, *(run_summary(run) for run in runs)]
    widths = {key: max(len(row[key]) for row in rows) for key in header}
    lines = [f"store {store.root}: {len(runs)} published run(s); latest -> {latest or 'none'} (marked *)"]
    for row in rows:
        mark = "*" if row["run"] == latest else " "
        lines.append(f"{mark} " + "  ".join(row[key].ljust(widths[key]) for key in header).rstrip())
    return "\n".join(lines)
