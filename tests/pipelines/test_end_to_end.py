"""The real demo path end to end, under Prefect itself: the nightly flow (extract, then train) on a small demo
catalog with the real bundled weights, then what a consumer of the published run relies on."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import faiss
import polars as pl
import pytest
from prefect.testing.utilities import prefect_test_harness

from pipelines.demo.catalog import DemoSpec
from pipelines.orchestration.nightly import nightly_deployment, nightly_flow
from pipelines.store.layout import Store
from tests.extract_helpers import make_demo, overrides_for

pytestmark = [pytest.mark.slow, pytest.mark.flow]
SMALL_DEMO = DemoSpec(n_items=120, n_users=80, n_interactions=4000, days=40, seed=1, cold_share=0.08)


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    demo = make_demo(root, SMALL_DEMO)
    # Three cold items added to the catalog tonight have no interaction yet: only content can reach them.
    truth = pl.read_parquet(demo.truth)
    unseen = truth.filter(pl.col("is_cold")).sort("first_seen")["item_id"].tail(3).to_list()
    interactions = root / "interactions.parquet"
    pl.read_parquet(demo.interactions).filter(~pl.col("item_id").is_in(unseen)).write_parquet(interactions)
    overrides = overrides_for(demo, root / "store", ("text", "image", "audio", "video"),
                              ["train.tune.trials=2", f"data.interactions='{interactions}'"])
    with prefect_test_harness(server_startup_timeout=120):
        result = nightly_flow(None, overrides)
    return demo, root / "store", result


def test_nightly_flow_publishes_a_run_behind_latest(published):
    _, store_root, result = published
    store = Store(store_root)
    assert store.latest_run() == Path(result["run"]).resolve()
    run = store.latest_run()
    for name in ("topk.parquet", "similar_items.parquet", "fused_items.parquet", "index.faiss", "index_items.parquet",
                 "metrics.json", "manifest.json", "report.txt", "recommender.json", "level/sources.npz",
                 "ranker/meta.json"):
        assert (run / name).exists(), name
    assert not list(store.runs_dir.glob(".incomplete-*"))
    summary = json.loads(store.summary_path.read_text())
    assert {m["modality"] for m in summary["modalities"]} == {"text", "image", "audio", "video"}


def test_topk_and_index_read_with_plain_tools(published):
    demo, store_root, _ = published
    run = Store(store_root).latest_run()
    topk = pl.read_parquet(run / "topk.parquet")
    assert topk.schema == {"user_id": pl.String, "rank": pl.Int32, "item_id": pl.String, "score": pl.Float32,
                           "source": pl.String}
    users = pl.read_parquet(demo.root.parent / "interactions.parquet")["user_id"].unique()
    assert set(topk["user_id"]) == set(users)
    assert topk.group_by("user_id").len()["len"].max() <= 50
    assert topk.select("user_id", "item_id").is_duplicated().sum() == 0
    index = faiss.read_index(str(run / "index.faiss"))
    assert index.ntotal == pl.read_parquet(run / "index_items.parquet").height == SMALL_DEMO.n_items


def test_the_latest_run_loads_in_a_fresh_process_and_answers_as_its_files(published):
    """`Recommender.load(<store>/latest)` in a new interpreter gives the lists topk.parquet and
    similar_items.parquet hold, for every user and item."""
    _, store_root, _ = published
    code = """
import sys, polars as pl
from pipelines.model.recommender import Recommender
latest = sys.argv[1] + "/latest"
rec = Recommender.load(latest)
topk = pl.read_parquet(latest + "/topk.parquet").sort("user_id", "rank")
users = topk["user_id"].unique(maintain_order=True).to_list()
ids, _ = rec.recommend(users, k=int(topk["rank"].max()))
got = [(u, i) for u, row in zip(users, ids) for i in row if i is not None]
assert got == list(zip(topk["user_id"], topk["item_id"])), "recommend differs from topk.parquet"
similar = pl.read_parquet(latest + "/similar_items.parquet").sort("item_id", "rank")
items = similar["item_id"].unique(maintain_order=True).to_list()
ids, _ = rec.similar_items(items, k=int(similar["rank"].max()))
got = [(q, i) for q, row in zip(items, ids) for i in row if i is not None]
assert got == list(zip(similar["item_id"], similar["similar_item_id"])), "similar_items differs"
print(len(users), len(items))
"""
    done = subprocess.run([sys.executable, "-c", code, str(store_root)], capture_output=True, text=True,
                          timeout=600, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr[-3000:]


def test_published_model_is_justified_and_new_items_reach_lists(published):
    _, store_root, _ = published
    run = Store(store_root).latest_run()
    metrics = json.loads((run / "metrics.json").read_text())
    table = metrics["temporal"]["table"]
    assert table["full"]["ndcg@10"] > table["popularity"]["ndcg@10"]
    assert table["full"]["n_users"] == metrics["temporal"]["test_users"] >= 60  # per-user split: most users
    decision = json.loads((run / "manifest.json").read_text())["published"]
    assert decision["model"] == metrics["temporal"]["published"] and decision["why"]
    # the three items nobody has consumed yet are placed in lists by the exposure policy
    assert metrics["production"]["new_items"] == 3
    assert metrics["production"]["users_with_new_items"] > 0
    topk = pl.read_parquet(run / "topk.parquet")
    slots = topk.filter(pl.col("source") == "new_item_slot")
    assert set(slots["rank"].unique().to_list()) <= {10, 20}
    coverage = metrics["item_cold"]["all_items"]["new_item_coverage"]
    assert coverage["lists@20"] > 0.5  # held-out items compete with the catalog and still reach lists
    report = (run / "report.txt").read_text()
    assert "paired differences" in report and "guard on validation" in report


def test_nightly_deployment_carries_the_cron_schedule():
    deployment = nightly_deployment(None, ["extract.shard_size=64"], cron="30 1 * * *")
    assert deployment.schedules[0].schedule.cron == "30 1 * * *"
    assert deployment.parameters == {"config_path": None, "overrides": ["extract.shard_size=64"]}
