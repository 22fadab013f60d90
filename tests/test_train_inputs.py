"""`make train` refuses bad input with errors that say what to run or change; small pieces of the train flow."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pipelines.config import load_config
from pipelines.store import Store
from pipelines.train import run_training
from pipelines.train_data import TrainInputError
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


def test_a_log_too_short_to_split_says_what_to_change(tmp_path):
    _store_with_text(tmp_path / "store", ["a", "b", "c"])
    cfg = _config(tmp_path, _interactions(1), ["train.split.min_user_events=5"])
    with pytest.raises(SplitError, match=r"holds out no event"):
        run_training(cfg)
    assert not (tmp_path / "store" / "latest").exists()


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


@pytest.fixture(scope="module")
def clustered_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("clustered")
    cfg = _config(tmp_path, _clustered(tmp_path), ["train.tune.trials=2", "train.modalities=['text']"])
    result = run_training(cfg)
    return tmp_path, Path(result["run_dir"])


def test_tuning_trials_and_the_published_choice_are_saved_with_the_run(clustered_run):
    tmp_path, run = clustered_run
    metrics = json.loads((run / "metrics.json").read_text())
    tuning = metrics["temporal"]["procedure"]["tuning"]
    for study in ("ease", "als", "knn", "seq", "ranker"):
        assert len(tuning[study]["trials"]) == 2, study
        assert tuning[study]["best_value"] >= tuning[study]["default_value"], study
    published = json.loads((run / "manifest.json").read_text())["published"]
    assert published["model"] == metrics["temporal"]["published"]
    assert published["why"] and published["new_item_scorer"]
    assert Store(tmp_path / "store").latest_run() == run.resolve()
    assert "published:" in (run / "report.txt").read_text().splitlines()[0]


def test_every_table_says_how_many_users_it_rests_on(clustered_run):
    _, run = clustered_run
    metrics = json.loads((run / "metrics.json").read_text())
    temporal = metrics["temporal"]
    assert temporal["test_users"] >= 30  # a per-user split tests most users, not the few of a last week
    users = temporal["test_users"]
    assert all(row["n_users"] == users and row["positives"] > 0 for row in temporal["table"].values())
    assert temporal["reliability"] == {"users": users, "min_users": 200, "reliable": False}
    assert f"UNRELIABLE: {users} users < 200" in (run / "report.txt").read_text()
    table = temporal["table"]
    assert table["full"]["ndcg@10"] > table["popularity"]["ndcg@10"]
