"""report.html sections drawn from the run's data files: popularity bias, the item map, the extraction summary,
the ranker's importances or training curve, and the run's config, inputs and versions."""

from __future__ import annotations

import json

import numpy as np
from scipy.sparse.linalg import svds

from pipelines.report_html import page, plots
from pipelines.report_html.run_files import RunFiles, Unavailable
from ranker.ranking.lgbm import LGBMRankerModel

MAP_ITEMS = 4000  # items drawn on the map (a seeded sample beyond): enough to see structure, a small PNG
CURVE_POINTS = 400
TOP_FEATURES = 25


def _downsample(x: np.ndarray, *ys: np.ndarray) -> tuple[np.ndarray, ...]:
    keep = np.unique(np.linspace(0, len(x) - 1, min(len(x), CURVE_POINTS)).round().astype(int))
    return (x[keep], *(y[keep] for y in ys))


def popularity(files: RunFiles) -> str:
    consumed, recommended = files.consumed, files.recommended
    n = len(consumed)
    if consumed.sum() == 0 or recommended.sum() == 0:
        raise Unavailable("no interactions or no recommendations in this run")
    order = np.lexsort((np.arange(n), -consumed))  # most consumed first, ties by position
    x = np.concatenate([[0.0], np.arange(1, n + 1) / n])
    shares = {name: np.concatenate([[0.0], np.cumsum(counts[order]) / counts.sum()])
              for name, counts in (("interactions (consumed)", consumed), ("recommendations (topk.parquet)",
                                                                            recommended))}
    curves = {name: _downsample(x, y) for name, y in shares.items()}
    chart = plots.lines(curves, "long tail: items by popularity rank", "share of the catalog, most consumed first",
                        "cumulative share", diagonal=True)
    head = max(1, round(0.1 * n))
    head_consumed, head_recommended = consumed[order[:head]].sum(), recommended[order[:head]].sum()
    rows = [["catalog items", n],
            ["catalog coverage: items in some published list", f"{(recommended > 0).mean():.1%}"],
            ["items with interactions", int((consumed > 0).sum())],
            ["share of interactions on the 10% most consumed items", f"{head_consumed / consumed.sum():.1%}"],
            ["share of recommendations on those items", f"{head_recommended / recommended.sum():.1%}"],
            ["share of recommendations on items without interactions",
             f"{recommended[consumed == 0].sum() / recommended.sum():.1%}"]]
    note = page.paragraph(page.text("A recommendation curve under the interaction curve spreads lists further down "
                                    "the tail than consumption does; above it, the lists concentrate on popular "
                                    "items."))
    return page.image(chart, "long-tail curve") + note + page.table(["", "value"], rows)


def _pca2(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 2-D principal coordinates and the share of variance each axis explains."""
    centred = vectors - vectors.mean(axis=0)
    u, s, _ = svds(centred.astype(np.float64), k=2, random_state=0)
    order = np.argsort(-s)
    total = float((centred.astype(np.float64) ** 2).sum()) or 1.0
    return u[:, order] * s[order], s[order] ** 2 / total


def item_map(files: RunFiles) -> str:
    fused = files.fused_vectors()
    with_vectors = np.flatnonzero(np.abs(fused).sum(axis=1) > 0)
    if len(with_vectors) < 3 or fused.shape[1] < 3:
        raise Unavailable(f"{len(with_vectors)} items with vectors of dimension {fused.shape[1]}: too few to map")
    rng = np.random.default_rng(0)
    drawn = np.sort(rng.choice(with_vectors, MAP_ITEMS, replace=False)) if len(with_vectors) > MAP_ITEMS \
        else with_vectors
    points, explained = _pca2(fused[drawn])
    categories = files.categories()
    if categories is not None:
        column, labels = categories
        labels, coloured = labels[drawn], f"the catalog column {column!r}"
    else:
        labels = np.where(files.consumed[drawn] > 0, "with interactions", "new (no interactions)")
        coloured = "interactions (the catalog has no category column)"
    chart = plots.scatter_groups(points, labels, f"fused item vectors, PCA ({len(drawn)} items)",
                                 f"PC1 ({explained[0]:.1%} of variance)", f"PC2 ({explained[1]:.1%} of variance)")
    missing = len(fused) - len(with_vectors)
    note = page.text(f"Coloured by {coloured}." + (f" {missing} items without any vector are not drawn." if missing
                                                   else "") + (f" A seeded sample of {MAP_ITEMS} of {len(with_vectors)}"
                                                               " items is drawn." if len(with_vectors) > MAP_ITEMS
                                                               else ""))
    return page.image(chart, "item map") + page.paragraph(note)


def extraction(files: RunFiles) -> str:
    summary = files.extract_summary
    rows = [[m["modality"], m.get("extractor", ""), m.get("dim"), m.get("total"), m.get("embedded"),
             m.get("unchanged"), m.get("known_failed"),
             ", ".join(f"{kind} {n}" for kind, n in sorted(m.get("failed", {}).items())) or "none",
             str(m.get("items_per_s", "")), str(m.get("wall_s", ""))] for m in summary.get("modalities", [])]
    head = page.paragraph(page.text(f"The store's last extraction, finished {summary.get('finished_at', '?')}: "
                                    f"{summary.get('catalog_items', '?')} catalog items ({summary.get('catalog', '')}) "
                                    f"in {summary.get('wall_s', '?')} s. It may be newer than this run's inputs."))
    return head + page.table(["modality", "extractor", "dim", "items with media", "embedded", "unchanged",
                              "known failures", "failed now (by kind)", "items/s", "wall s"], rows)


def ranker(files: RunFiles) -> str:
    folder = files.run / "ranker"
    meta_path = folder / "meta.json"
    if not meta_path.is_file():
        raise Unavailable("the run folder has no ranker/")
    meta = json.loads(meta_path.read_text())
    published = files.metrics.get("production", {}).get("published", {}).get("model", "?")
    note = page.paragraph(page.text(f"The ranker as trained for production (published model: {published}; when the "
                                    "guard publishes a source instead, the ranker is still saved and shown here)."))
    if meta.get("kind") == "lgbm_ranker":
        gains = LGBMRankerModel.load(folder).feature_importances_
        top = sorted(gains.items(), key=lambda kv: -kv[1])[:TOP_FEATURES]
        chart = plots.bars([n for n, _ in top], [g for _, g in top], None,
                           f"LightGBM feature importance ({len(gains)} features, top {len(top)})", "total split gain")
        return note + page.image(chart, "feature importance")
    history = meta.get("history")
    if not history:
        raise Unavailable(f"the {meta.get('kind', 'unknown')} ranker saved no training curve")
    epochs = np.array([r["epoch"] for r in history])
    curves = {key: (epochs, np.array([r[key] for r in history])) for key in ("train_loss", "valid_ndcg")
              if all(key in r for r in history)}
    charts = [page.image(plots.lines({k: v}, f"MLP ranker: {k} per epoch", "epoch", k), k) for k, v in curves.items()]
    return note + "".join(charts) + page.paragraph(page.text(f"best epoch: {meta.get('best_epoch')}"))


def run_record(files: RunFiles) -> str:
    manifest = files.manifest
    inputs = manifest.get("inputs", {})
    input_rows = [[key, inputs[key], inputs.get(f"{key}_sha256") or "not hashed"] for key in ("catalog", "interactions")
                  if key in inputs]
    facts = [["finished at", manifest.get("finished_at", "")], ["weight kind", manifest.get("weight_kind", "")],
             ["interactions dropped (unknown items)", inputs.get("dropped_unknown_item_rows", "")],
             *[[f"items with {m} vectors", n] for m, n in inputs.get("modalities", {}).items()],
             *[[f"time: {k}", v] for k, v in manifest.get("timings", {}).items()]]
    return (page.table(["", "value"], facts) + page.heading("inputs")
            + page.table(["input", "path", "sha256"], input_rows) + page.heading("package versions")
            + page.table(["package", "version"], sorted(manifest.get("packages", {}).items()))
            + page.heading("config") + page.preformatted(json.dumps(manifest.get("config", {}), indent=2)))
