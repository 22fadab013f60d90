"""`make train` refuses bad input with errors that say what to run or change; small pieces of the train flow."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pipelines.config import load_config
from pipelines.fit_ranker import hide_items
from pipelines.store import Store
from pipelines.train import run_training, topk_frame
from pipelines.train_data import TrainInputError, TrainInputs
from ranker.splits import SplitError

T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)


def _store_with_text(root, item_ids):
    store = Store(root)
    hashes = [f"h{i}" for i in item_ids]
    vectors = np.random.default_rng(0).normal(size=(len(item_ids), 8)).astype(np.float32)
    store.write_embeddings("text", "fp", item_ids, hashes, vectors)
    store.write_current("text", "fp", pl.DataFrame({"item_id": item_ids, "content_hash": hashes}))


def _config(tmp_path, interactions: pl.DataFrame, extra=()):
    path = tmp_path / "interactions.parquet"
    interactions.write_parquet(path)
    return load_config(None, [f"data.interactions='{path}'", f"data.catalog='{tmp_path / 'c.parquet'}'",
                              "data.demo=false", f"store.root='{tmp_path / 'store'}'", *extra])


def _interactions(n_days: int, users=("u1", "u2", "u3"), items=("a", "b", "c")) -> pl.DataFrame:
    rows = [(u, items[(d + j) % len(items)], T0 + timedelta(days=d, hours=j))
            for d in range(n_days) for j, u in enumerate(users)]
    return pl.DataFrame(rows, schema={"user_id": pl.String, "item_id": pl.String, "ts": pl.Datetime("us", "UTC")},
                        orient="row")


def test_no_current_embeddings_says_run_extract(tmp_path):
    cfg = _config(tmp_path, _interactions(30))
    with pytest.raises(TrainInputError, match=r"no current embeddings in .*Fix: run `make extract`"):
        run_training(cfg)


def test_empty_interactions_is_named(tmp_path):
    _store_with_text(tmp_path / "store", ["a", "b", "c"])
    cfg = _config(tmp_path, _interactions(30).clear())
    with pytest.raises(TrainInputError, match=r"interactions file is empty"):
        run_training(cfg)
    assert not (tmp_path / "store" / "runs").exists()


def test_cutoff_without_test_users_says_what_to_change(tmp_path):
    _store_with_text(tmp_path / "store", ["a", "b", "c"])
    cfg = _config(tmp_path, _interactions(30), ["train.split.test_days=60"])
    with pytest.raises(SplitError, match=r"test_days"):
        run_training(cfg)
    assert not (tmp_path / "store" / "latest").exists()


def test_hidden_items_lose_their_history_but_keep_their_labels():
    history = pl.DataFrame({"user_idx": [0, 0, 1, 1, 2], "item_idx": [0, 1, 1, 2, 3]})
    window = pl.DataFrame({"user_idx": [0, 1, 2], "item_idx": [2, 3, 1]})
    kept, hidden = hide_items(history, window, share=0.5, seed=0)
    assert len(hidden) == 2 and set(hidden) <= {1, 2, 3}
    assert not kept["item_idx"].is_in(hidden.tolist()).any()
    assert kept.height == history.filter(~pl.col("item_idx").is_in(hidden.tolist())).height


def test_topk_frame_flags_fallback_and_tops_up_short_lists():
    inputs = TrainInputs(item_ids=np.array(["a", "b", "c", "d"], dtype=object),
                         user_ids=np.array(["u0", "u1"], dtype=object), tables={}, interactions=pl.DataFrame(),
                         dropped_unknown_items=0)
    ranked = (np.array([[2, -1, -1]]), np.array([[0.9, -np.inf, -np.inf]], dtype=np.float32))
    popular = (np.array([[0, 2, 1], [0, 1, 2]]), np.array([[5.0, 4.0, 3.0], [5.0, 4.0, 3.0]], dtype=np.float32))
    frame = topk_frame(inputs, ranked, np.array([0]), popular, k=3)
    u0 = frame.filter(pl.col("user_id") == "u0")
    assert u0["item_id"].to_list() == ["c", "a", "b"]  # the ranker's item, then popular unseen ones, no repeat
    assert u0["source"].to_list() == ["ranker", "popularity_topup", "popularity_topup"]
    assert u0["rank"].to_list() == [1, 2, 3]
    u1 = frame.filter(pl.col("user_id") == "u1")
    assert u1["source"].unique().to_list() == ["popularity_fallback"] and u1.height == 3


def _clustered(tmp_path, n_items=60, n_users=40, days=30):
    """Users each stick to one of 3 item clusters, whose text vectors share a direction."""
    rng = np.random.default_rng(1)
    cluster = np.arange(n_items) % 3
    centres = rng.normal(size=(3, 8))
    vectors = (centres[cluster] + 0.3 * rng.normal(size=(n_items, 8))).astype(np.float32)
    item_ids = [f"i{i:02d}" for i in range(n_items)]
    store = Store(tmp_path / "store")
    store.write_embeddings("text", "fp", item_ids, item_ids, vectors)
    store.write_current("text", "fp", pl.DataFrame({"item_id": item_ids, "content_hash": item_ids}))
    rows = []
    for u in range(n_users):
        mine = np.flatnonzero(cluster == u % 3)
        for d in range(days):
            rows.append((f"u{u:02d}", item_ids[rng.choice(mine)], T0 + timedelta(days=d, minutes=u)))
    return pl.DataFrame(rows, schema={"user_id": pl.String, "item_id": pl.String, "ts": pl.Datetime("us", "UTC")},
                        orient="row")


def test_search_results_are_saved_with_the_run(tmp_path):
    cfg = _config(tmp_path, _clustered(tmp_path), ["train.ranker.search=true", "train.ranker.search_budget=2",
                                                   "train.item_cold.enabled=false", "train.modalities=['text']"])
    result = run_training(cfg)
    run = Path(result["run_dir"])
    metrics = json.loads((run / "metrics.json").read_text())
    ranker = metrics["temporal"]["ranker"]
    assert len(ranker["search"]["trials"]) == 2 and ranker["search"]["best_params"]
    assert len(ranker["als_search"]["trials"]) == 2
    assert Store(tmp_path / "store").latest_run() == run.resolve()
    table = metrics["temporal"]["table"]
    assert table["full"]["ndcg@10"] > table["popularity"]["ndcg@10"]
