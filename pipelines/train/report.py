"""The run's text report: which model was published and why, every protocol's table with the users and
positives it rests on, paired differences, the new-item guard and what tuning chose."""

from __future__ import annotations

from pipelines.train.evaluate import format_paired, format_table


def decision(fitted) -> dict:
    guard = fitted.report.get("guard", {})
    table, metric = guard.get("table", {}), guard.get("metric", "ndcg@20")
    best_source = max((n for n in table if n != "ranker"), key=lambda n: table[n][metric], default=None)
    if fitted.published == "ranker":
        why = (f"the ranker beat every candidate source alone on validation ({guard.get('users', 0)} users): "
               f"{metric} {table.get('ranker', {}).get(metric, float('nan')):.4f} vs {best_source} "
               f"{table.get(best_source, {}).get(metric, float('nan')):.4f}")
    else:
        why = (f"the ranker did not beat {fitted.published} on validation ({guard.get('users', 0)} users): "
               f"{metric} {table.get('ranker', {}).get(metric, float('nan')):.4f} vs "
               f"{table.get(fitted.published, {}).get(metric, float('nan')):.4f}; {fitted.published} is published")
    return {"model": fitted.published, "why": why, "new_item_scorer": fitted.new_item_scorer,
            "new_item_positions": list(fitted.cfg.new_items.positions)}


def _guard_lines(title: str, guard: dict) -> list[str]:
    if not guard.get("table"):
        return [f"{title}: {guard.get('reason', 'not run')}"]
    metric = next(iter(next(iter(guard["table"].values())))) if guard["table"] else "ndcg@20"
    lines = [f"{title} ({guard.get('users', 0)} users; chosen: {guard['chosen']})"]
    for name, row in sorted(guard["table"].items(), key=lambda kv: -kv[1][metric]):
        lines.append(f"  {name:<16} {metric} {row[metric]:.4f}   ranker minus it {row['ranker_minus']:+.4f} "
                     f"± {row['stderr']:.4f}")
    return lines


def _users(protocol: dict) -> str:
    """"610 users", or "500 of 610 users (seeded sample)" under train.eval.max_users."""
    tested, eligible = protocol["test_users"], protocol.get("eligible_users", protocol["test_users"])
    return f"{tested} users" if tested == eligible else f"{tested} of {eligible} users (seeded sample)"


def format_report(metrics: dict) -> str:
    published = metrics["production"]["published"]
    if "temporal" not in metrics:
        evaluation = metrics.get("evaluation", {})
        return "\n".join([f"published: {published['model']} - {published['why']}",
                          f"new items: scored by {published['new_item_scorer']}, reserved list positions "
                          f"{published['new_item_positions']}", f"weights read as: {metrics['weight_kind']}", "",
                          f"test protocols not run this time ({evaluation.get('why', '')}); the last evaluated "
                          f"run: {evaluation.get('last_evaluated_run') or 'none'}"])
    temporal, min_users = metrics["temporal"], metrics["temporal"]["reliability"]["min_users"]
    parts = [f"published: {published['model']} - {published['why']}",
             f"new items: scored by {published['new_item_scorer']}, reserved list positions "
             f"{published['new_item_positions']}",
             f"weights read as: {metrics['weight_kind']}", "",
             format_table(f"temporal protocol ({temporal['split']} split, last {temporal['test_share']:.0%} held "
                          f"out; {_users(temporal)}, {temporal['test_positives']} positives)",
                          temporal["table"], cold=False, min_users=min_users)]
    diffs = [("temporal", temporal["paired"])]
    if metrics.get("item_cold"):
        cold = metrics["item_cold"]
        parts.append(format_table(f"item-cold protocol: ranking the {cold['cold_items']} held-out items "
                                  f"(full = new-item scorer: {cold['new_item_scorer']}; {_users(cold)})",
                                  cold["held_out"]["table"], cold=False, min_users=min_users))
        parts.append(format_table("item-cold protocol: ranking all items (full = published lists, exposure "
                                  f"positions {cold['all_items']['exposure_positions']})",
                                  cold["all_items"]["table"], cold=False, min_users=min_users))
        parts.append("new-item coverage (share of held-out items shown / of lists showing one): "
                     + ", ".join(f"{k} {v:.3f}" for k, v in cold["all_items"]["new_item_coverage"].items()))
        diffs += [("item-cold held-out", cold["held_out"]["paired"]),
                  ("item-cold all items", cold["all_items"]["paired"])]
    lines = [line for name, block in diffs for line in format_paired(name, block)]
    parts.append("paired differences (per user, same users; * = beyond 2 standard errors)\n" + "\n".join(lines))
    procedure = temporal["procedure"]
    parts.append("\n".join(_guard_lines("guard on validation", procedure.get("guard", {}))))
    parts.append("\n".join(_guard_lines("new-item guard on validation", procedure.get("new_item_guard", {}))))
    tuning = procedure.get("tuning", {})
    if tuning:
        parts.append("tuning on validation (best vs configured values, trials):\n" + "\n".join(
            f"  {name:<15} {rec.get('best_value', float('nan')):.4f} vs {rec.get('default_value', float('nan')):.4f}"
            f"  ({len(rec.get('trials', []))} trials{', stopped by the time budget' if rec.get('budget_cut') else ''})"
            f"  {rec.get('best_params', rec.get('skipped', ''))}" for name, rec in tuning.items()))
    return "\n\n".join(parts)
