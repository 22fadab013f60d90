"""`make bench` plumbing on a tiny problem: the timing helper, the top-k comparison and the report it feeds.
No timing is asserted: speed is only ever reported, as ratios, by `make bench`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def test_topk_comparison_and_report_on_a_tiny_problem(tmp_path):
    if str(REPO) not in sys.path:  # bench/ is a top-level folder of the repository, not an installed package
        sys.path.insert(0, str(REPO))
    from bench import run as bench_run
    from bench import topk
    from bench.timing import median_time
    from ranker.retrieval.index import ItemIndex

    calls = []
    timing = median_time(lambda: calls.append(1), repeats=3, warmup=1)
    assert len(calls) == 4 and len(timing["times_s"]) == timing["repeats"] == 3
    assert min(timing["times_s"]) <= timing["median_s"] <= max(timing["times_s"])

    result = topk.compare(2_000, n_users=100, kinds=("flat", "ivf"), repeats=2, warmup=0)
    assert (result["n_items"], result["n_users"], result["k"], result["auto_kind"]) == (2_000, 100, 20, "flat")
    for entry in result["kinds"].values():
        assert {"build_s", "numpy", "faiss", "speedup", "recall"} <= set(entry)
        assert len(entry["faiss"]["times_s"]) == 2 and entry["speedup"] > 0 and 0 <= entry["recall"] <= 1

    # exact FAISS and the numpy brute force agree on every user's top-k (up to float near-ties, none here)
    rng = np.random.default_rng(1)
    items, users = topk.unit_vectors(2_000, topk.DIM, rng), topk.unit_vectors(100, topk.DIM, rng)
    numpy_ids, numpy_scores = topk.numpy_topk(items, users, 20)
    faiss_ids, faiss_scores = ItemIndex.build(items, kind="flat").search(users, 20)
    assert numpy_ids.shape == faiss_ids.shape == (100, 20)
    assert topk.exact_disagreements(faiss_ids, numpy_ids, items, users) == 0
    assert all(set(a) == set(b) for a, b in zip(numpy_ids, faiss_ids))
    np.testing.assert_allclose(numpy_scores, faiss_scores, atol=1e-5)
    assert result["kinds"]["flat"]["recall"] == 1.0 and result["kinds"]["flat"]["rows_differing_beyond_ties"] == 0

    # the report: JSON-serialisable rows with a goal and a verdict, a Markdown table, the marked section rewritten
    rows = topk._rows(result)
    assert rows and all({"benchmark", "ours", "baseline", "ratio", "goal", "met"} <= set(r) for r in rows)
    report = {"machine": bench_run.machine_info(), "quick": True, "wall_s": 1.0,
              "benchmarks": {"topk": {"name": "topk", "rows": rows, "notes": ["tiny"]}}}
    assert json.loads(json.dumps(report))["benchmarks"]["topk"]["rows"][0]["benchmark"].startswith("topk 2k items")
    section = bench_run.markdown(report)
    assert "| benchmark | ours | baseline | ratio | goal | met |" in section
    assert "| text | not yet measured |" in section
    doc = tmp_path / "BENCHMARKS.md"
    doc.write_text(f"intro\n{bench_run.START}\nold table\n{bench_run.END}\noutro\n")
    bench_run.rewrite_doc(doc, section)
    text = doc.read_text()
    assert "old table" not in text and text.startswith("intro\n") and text.endswith("outro\n") and section in text


def test_train_path_stages_on_a_tiny_catalog(tmp_path):
    """The train-path benchmark's worker runs every stage of the product's path (streamed fusion included:
    1,500 items is over its fit_items) and its table shows each stage's growth against the smallest size."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from bench import train_path, train_path_worker

    dims = {"text": 24, "image": 80, "audio": 16, "video": 80}  # the bench runs the extractors' real dims
    result = train_path_worker.run(1_500, 300, 40, tmp_path, dims=dims)
    names = [s["stage"] for s in result["stages"]]
    assert names[1:] == ["load", "fuse", "index", "sources (fit on all users)", "candidates", "features", "rank",
                         "lists + write (end to end)"]
    assert all(s["peak_rss_gb"] >= s["rss_start_gb"] > 0 for s in result["stages"])
    assert next(s for s in result["stages"] if s["stage"] == "fuse")["dim"] == 24 + 64 + 16 + 64  # PCA to <= 64
    import polars as pl

    topk = pl.read_parquet(tmp_path / "topk.parquet")
    assert topk["user_id"].n_unique() == 40 and topk.group_by("user_id").len()["len"].max() == 20
    result["peak_rss_gb"] = 1.0
    bigger = {**result, "items": 3_000, "stages": [{**s, "seconds": 2 * s["seconds"]} for s in result["stages"]]}
    table = train_path.scaling_table([result, bigger])
    assert "| fuse |" in table and "x2.0" in table and "(extrapolated from 40 users)" in table
