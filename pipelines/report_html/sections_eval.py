"""report.html sections drawn from metrics.json: the published model against its baselines, the per-modality
ablation and fusion, new items, and the tuning trials."""

from __future__ import annotations

import json
import math

import numpy as np

from pipelines.report_html import page, plots
from pipelines.report_html.run_files import RunFiles

FUSED = "content"  # the content source on the fused vectors; content_<modality> are the one-modality ablations


def main_metric(metrics: dict) -> str:
    """The metric the guard decided on (ndcg@20 by default), the one every chart shows."""
    guard = metrics.get("temporal", {}).get("procedure", {}).get("guard", {})
    return guard.get("metric", "ndcg@20")


def cutoff(metric: str) -> str:
    return metric.split("@", 1)[1] if "@" in metric else "20"


def _not_evaluated(metrics: dict) -> str:
    evaluation = metrics.get("evaluation", {})
    return (f"the test protocols did not run this time ({evaluation.get('why', 'no reason recorded')}); the last "
            f"evaluated run: {evaluation.get('last_evaluated_run') or 'none'}")


def _users(protocol: dict) -> str:
    tested, eligible = protocol["test_users"], protocol.get("eligible_users", protocol["test_users"])
    return f"{tested} users" if tested == eligible else f"{tested} of {eligible} users (seeded sample)"


def _cell(row: dict, metric: str) -> str:
    value, err = row.get(metric), row.get(f"{metric}_stderr")
    if value is None:
        return ""
    return f"{value:.4f} ± {err:.4f}" if err is not None and math.isfinite(err) else f"{value:.4f}"


def metric_table(table: dict, metric: str, highlight: tuple[str, ...] = ()) -> str:
    k = cutoff(metric)
    columns = [c for c in (metric, f"recall@{k}", f"hitrate@{k}", f"map@{k}", f"coverage@{k}", f"novelty@{k}")
               if any(c in row for row in table.values())]
    rows = [[name, *(_cell(row, c) for c in columns), int(row.get("n_users", 0)), int(row.get("positives", 0))]
            for name, row in table.items()]
    marked = [i for i, name in enumerate(table) if name in highlight]
    return page.table(["model", *(f"{c} ± s.e." for c in columns), "users", "positives"], rows, marked)


def metric_bars(table: dict, metric: str, title: str, highlight: tuple[str, ...]) -> str:
    ranked = sorted(table, key=lambda name: -table[name].get(metric, float("-inf")))
    values = [table[name].get(metric, float("nan")) for name in ranked]
    errors = [table[name].get(f"{metric}_stderr", 0.0) for name in ranked]
    return page.image(plots.bars(ranked, values, errors, title, f"{metric} (bars: ± one standard error)", highlight),
                      title)


def _protocol_blocks(metrics: dict) -> list[tuple[str, dict, dict]]:
    """(title, table, paired differences) of every protocol this run tested."""
    temporal = metrics["temporal"]
    blocks = [(f"temporal protocol ({temporal['split']} split, last {temporal['test_share']:.0%} held out; "
               f"{_users(temporal)}, {temporal['test_positives']} positives)", temporal["table"],
               temporal.get("paired", {}))]
    cold = metrics.get("item_cold")
    if cold:
        blocks.append((f"item-cold protocol: ranking the {cold['cold_items']} held-out items (full = the new-item "
                       f"scorer, {cold['new_item_scorer']}; {_users(cold)})", cold["held_out"]["table"],
                       cold["held_out"].get("paired", {})))
        blocks.append((f"item-cold protocol: ranking all items (full = the published lists, new items at positions "
                       f"{cold['all_items']['exposure_positions']}; {_users(cold)})", cold["all_items"]["table"],
                       cold["all_items"].get("paired", {})))
    return blocks


def _paired_table(paired: dict) -> str:
    rows = [[key, f"{d['mean']:+.4f}", f"{d['stderr']:.4f}", int(d["users"]), "yes" if d["significant"] else "no"]
            for key, d in paired.items()]
    return page.table(["difference (per user, same users)", "mean", "s.e.", "users", "beyond 2 s.e."], rows)


def _guard(guard: dict, title: str) -> str:
    if not guard.get("table"):
        return page.heading(title) + page.not_available(guard.get("reason", "the guard did not run"))
    metric = guard.get("metric", "ndcg@20")
    ordered = sorted(guard["table"].items(), key=lambda kv: -kv[1][metric])
    rows = [[name, row[metric], f"{row['ranker_minus']:+.4f}", row["stderr"]] for name, row in ordered]
    marked = [i for i, (name, _) in enumerate(ordered) if name == guard.get("chosen")]
    return (page.heading(f"{title} ({guard.get('users', 0)} users; chosen: {guard.get('chosen')})")
            + page.paragraph(page.text(guard.get("rule", "")))
            + page.table(["candidate", metric, "ranker minus it", "paired s.e."], rows, marked))


def models(files: RunFiles) -> str:
    metrics = files.metrics
    published = metrics["production"]["published"]
    body = [page.paragraph(f"<b>Published: {page.text(published['model'])}</b>. {page.text(published['why'])}."),
            page.paragraph(page.text(f"New items are scored by {published['new_item_scorer']} and shown at reserved "
                                     f"list positions {published['new_item_positions']}; interaction weights read as "
                                     f"{metrics.get('weight_kind')}."))]
    if "temporal" not in metrics:
        return "".join(body) + page.not_available(_not_evaluated(metrics))
    metric = main_metric(metrics)
    reliability = metrics["temporal"].get("reliability", {})
    if reliability and not reliability.get("reliable", True):
        body.append(page.paragraph(page.text(f"UNRELIABLE: {reliability['users']} test users, fewer than "
                                             f"train.eval.min_users = {reliability['min_users']}.")))
    procedure = metrics["temporal"].get("procedure", {})
    body.append(_guard(procedure.get("guard", {}), "the guard on validation"))
    highlight = ("full", "published")
    for i, (title, table, paired) in enumerate(_protocol_blocks(metrics)):
        body.append(page.heading(title))
        if i == 0:
            body.append(metric_bars(table, metric, "temporal protocol: every model of this run", highlight))
        body.append(metric_table(table, metric, highlight))
        if paired:
            body.append(_paired_table(paired))
    if "item_cold" not in metrics:
        body.append(page.not_available("the item-cold protocol is off (train.item_cold.enabled = false)"))
    return "".join(body)


def _ablation(table: dict, metric: str) -> dict[str, tuple[float, float]]:
    """modality (or "fused") -> (value, stderr) of the content source on that modality's vectors alone."""
    names = [n for n in table if n.startswith(f"{FUSED}_") and n != f"{FUSED}_recent"]
    out = {n.removeprefix(f"{FUSED}_"): (table[n][metric], table[n].get(f"{metric}_stderr", 0.0)) for n in names}
    if FUSED in table:
        out["fused"] = (table[FUSED][metric], table[FUSED].get(f"{metric}_stderr", 0.0))
    return out


def _fusion(files: RunFiles) -> str:
    fusion = files.json_file("fusion/fusion.json") if (files.run / "fusion" / "fusion.json").is_file() else {}
    weights = files.metrics["production"].get("tuned", {}).get("fusion_weights") or fusion.get("params", {}).get(
        "weights")
    parts = [page.heading(f"fusion: {fusion.get('method', 'unknown method')}, {fusion.get('dim', '?')} dimensions")]
    if weights:
        parts.append(page.table(["modality", "fusion weight (production)"], sorted(weights.items())))
    else:
        parts.append(page.not_available("this fusion method has no per-modality weights"))
    gated = files.run / "fusion" / "gated.json"
    if gated.is_file():
        history = json.loads(gated.read_text()).get("loss_history", [])
        epochs = np.arange(1, len(history) + 1)
        parts.append(page.image(plots.lines({"training loss": (epochs, np.asarray(history))}, "gated fusion training",
                                            "epoch", "loss"), "gated fusion training loss"))
    with np.load(files.run / "item_vectors.npz", allow_pickle=False) as data:
        mask, modalities = data["mask"], [k.removeprefix("block.") for k in data.files if k.startswith("block.")]
    if mask.shape[1] == len(modalities):
        rows = [[m, int(mask[:, j].sum()), f"{mask[:, j].mean():.1%}"] for j, m in enumerate(modalities)]
        parts.append(page.table(["modality", "items with vectors", "share of the catalog"], rows))
    return "".join(parts)


def modalities(files: RunFiles) -> str:
    metrics = files.metrics
    body = []
    if "temporal" in metrics:
        metric = main_metric(metrics)
        series = {"temporal (all items)": _ablation(metrics["temporal"]["table"], metric)}
        if metrics.get("item_cold"):
            series["item-cold (held-out new items)"] = _ablation(metrics["item_cold"]["held_out"]["table"], metric)
        groups = list(dict.fromkeys(g for s in series.values() for g in s))
        body.append(page.paragraph(page.text("The content source ranked on one modality's vectors alone, and on the "
                                             "fused vectors: what each modality brings.")))
        data = {name: ([s.get(g, (np.nan, 0.0))[0] for g in groups], [s.get(g, (np.nan, 0.0))[1] for g in groups])
                for name, s in series.items()}
        body.append(page.image(plots.grouped_bars(groups, data, "content source per modality vs fused",
                                                  f"{metric} (± one standard error)"), "per-modality ablation"))
        body.append(page.table(["vectors", *series], [[g, *(f"{s[g][0]:.4f} ± {s[g][1]:.4f}" if g in s else ""
                                                            for s in series.values())] for g in groups]))
    else:
        body.append(page.not_available(_not_evaluated(metrics)))
    body.append(_fusion(files))
    return "".join(body)


def new_items(files: RunFiles) -> str:
    metrics, production = files.metrics, files.metrics["production"]
    new = files.consumed == 0
    slots = files.topk.filter(files.topk["source"] == "new_item_slot")
    shown = len(set(slots["item_id"].to_list()))
    rows = [["items without interactions (new)", int(new.sum())],
            ["of them, shown in some published list", shown],
            ["list rows holding a new item (topk.parquet, source new_item_slot)", len(slots)],
            ["users whose list shows a new item", slots["user_id"].n_unique()],
            ["users with a list", production.get("users", files.topk["user_id"].n_unique())]]
    body = [page.heading("the published lists (competing with the whole catalog)"), page.table(["", "count"], rows)]
    cold = metrics.get("item_cold")
    if not cold:
        why = _not_evaluated(metrics) if "temporal" not in metrics else "train.item_cold.enabled = false"
        return "".join(body) + page.heading("how new items rank among new items") + page.not_available(why)
    metric = main_metric(metrics)
    body += [page.heading(f"how the {cold['cold_items']} held-out items rank among themselves ({_users(cold)})"),
             metric_table(cold["held_out"]["table"], metric, ("full",)),
             page.heading("how often held-out items reach the lists when competing with the catalog"),
             page.table(["share", "value"], sorted(cold["all_items"].get("new_item_coverage", {}).items())),
             page.paragraph(page.text("items@K: share of the held-out items shown in some top-K list; lists@K: share "
                                      "of the lists that show at least one of them."))]
    return "".join(body)


def tuning(files: RunFiles) -> str:
    metrics = files.metrics
    tuned = metrics["production"].get("tuned")
    tuned_block = page.heading("the values the production model uses") + page.preformatted(
        json.dumps(tuned, indent=2)) if tuned else ""
    studies = metrics.get("temporal", {}).get("procedure", {}).get("tuning")
    if not studies:
        why = _not_evaluated(metrics) if "temporal" not in metrics else "tuning is off (train.tune.enabled = false)"
        return page.not_available(f"no tuning records: {why}") + tuned_block
    points = {name: [(t["number"], float(t["value"])) for t in rec.get("trials", [])
                     if t.get("value") is not None and math.isfinite(t["value"])] for name, rec in studies.items()}
    rows = [[name, len(rec.get("trials", [])), rec.get("best_value"), rec.get("default_value"),
             "yes" if rec.get("budget_cut") else "no", json.dumps(rec.get("best_params", rec.get("skipped", "")))]
            for name, rec in studies.items()]
    body = [page.paragraph(page.text("Validation score of every trial of every study (the test users are never seen "
                                     "by tuning).")),
            page.table(["study", "trials", "best", "configured values", "stopped by the time budget", "best params"],
                       rows)]
    drawn = {name: p for name, p in points.items() if p}
    if drawn:
        body.append(page.image(plots.trial_panels(drawn, {n: studies[n].get("default_value") for n in drawn}),
                               "tuning trials"))
    return "".join(body) + tuned_block
