"""Scaling of the train path: 10k, 100k and 1M items with 100k users, each in its own process
(`bench/train_path_worker.py`), wall time and peak RSS per stage, and how each stage grows with the catalog
(its time divided by its time at the smallest size: the same code, the same machine, the same run).

Goal: the 1M-item run stays under 8 GB peak RSS. The scoring stages are measured on a seeded sample of users
and extrapolated linearly to every user (user chunks are independent); the table says so.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

FULL_SIZES = ((10_000, 100_000, 500), (100_000, 100_000, 150), (1_000_000, 100_000, 15))
QUICK_SIZES = ((3_000, 3_000, 200), (6_000, 3_000, 200))
RSS_GOAL_GB = 8.0
TIMEOUT_S = 900
BREAKDOWN = ("candidates", "features", "rank")  # the scoring path's parts, timed apart on the same sample


def _worker(items: int, users: int, sample: int, out: Path) -> dict:
    command = [sys.executable, "-m", "bench.train_path_worker", "--items", str(items), "--users", str(users),
               "--sample-users", str(sample), "--out", str(out)]
    print(f"  train path: {items:,} items x {users:,} users ...", flush=True)
    done = subprocess.run(command, timeout=TIMEOUT_S, capture_output=True, text=True)
    print(done.stdout, end="", flush=True)
    if done.returncode != 0:
        return {"items": items, "users": users, "error": (done.stderr or done.stdout)[-2000:]}
    return json.loads(out.read_text())


def _seconds(stage: dict) -> float:
    """Stage seconds at full scale: the sampled scoring stages scaled to every user."""
    if "extrapolated_to" in stage:
        return stage["seconds"] * stage["extrapolated_to"] / stage["users"]
    return stage["seconds"]


def scaling_table(results: list[dict]) -> str:
    ok = [r for r in results if "error" not in r]
    if not ok:
        return ""
    base = {s["stage"]: _seconds(s) for s in ok[0]["stages"]}
    head = "| stage | " + " | ".join(f"{r['items']:,} items" for r in ok) + " |"
    lines = [head, "|---|" + "---|" * len(ok)]
    for name in [s["stage"] for s in ok[0]["stages"]]:
        cells = []
        for r in ok:
            stage = next(s for s in r["stages"] if s["stage"] == name)
            growth = _seconds(stage) / base[name] if base[name] > 0 else float("nan")
            extrapolated = " (extrapolated from {:,} users)".format(stage["users"]) if "users" in stage else ""
            cells.append(f"{_seconds(stage):.1f} s{extrapolated}, x{growth:.1f}; peak {stage['peak_rss_gb']:.2f} GB")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("| **peak RSS of the run** | " + " | ".join(f"**{r['peak_rss_gb']:.2f} GB**" for r in ok) + " |")
    return "\n".join(lines)


def _wall(result: dict) -> float:
    """The train path's wall time at full scale: not the synthetic store's writing, and candidates / features /
    rank only through "lists + write", which runs them again end to end."""
    return sum(_seconds(s) for s in result["stages"][1:] if s["stage"] not in BREAKDOWN)


def run(quick: bool) -> dict:
    sizes = QUICK_SIZES if quick else FULL_SIZES
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-train-path-") as tmp:
        for items, users, sample in sizes:
            results.append(_worker(items, users, sample, Path(tmp) / f"{items}.json"))
    return summarize(results)


def summarize(results: list[dict]) -> dict:
    rows, notes = [], []
    smallest = next((r for r in results if "error" not in r), None)
    for r in results:
        label = f"train path {r['items']:,} items x {r['users']:,} users"
        if "error" in r:
            rows.append({"benchmark": label, "ours": "error: " + r["error"].strip().splitlines()[-1][:120],
                         "baseline": "-", "ratio": "-", "goal": "-", "met": None})
            continue
        total, base_total = _wall(r), _wall(smallest)
        big = r["items"] >= 1_000_000
        rows.append({"benchmark": f"{label}: peak RSS, wall (scoring extrapolated from {r['sample_users']:,} users)",
                     "ours": f"{r['peak_rss_gb']:.2f} GB, {total:.0f} s",
                     "baseline": f"{smallest['items']:,} items: {base_total:.0f} s",
                     "ratio": f"x{total / base_total:.1f} time for x{r['items'] / smallest['items']:.0f} items",
                     "goal": f"< {RSS_GOAL_GB:.0f} GB" if big else "context",
                     "met": (r["peak_rss_gb"] < RSS_GOAL_GB) if big else None})
        sources = next(s for s in r["stages"] if s["stage"].startswith("sources"))
        notes.append(f"{r['items']:,} items: {r['interactions']:,} interactions; source fit seconds "
                     f"{sources.get('per_source_s')}")
    return {"name": "train_path", "rows": rows, "notes": notes, "results": results,
            "tables": [("Train path per stage (time at full scale, growth against the smallest catalog, peak RSS "
                        "during the stage)", scaling_table(results))]}
