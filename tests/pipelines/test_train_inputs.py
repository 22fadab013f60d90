"""`make train` refuses bad input with errors that say what to run or change; small pieces of the train flow."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pipelines.store.layout import Store
from pipelines.train.flow import run_training
from pipelines.train.inputs import TrainInputError
from ranker.evaluation.splits import SplitError
from tests.train_helpers import T0, clustered_store, train_config


def _store_with_text(root, item_ids):
    store = Store(root)
    hashes = [f"h{i}" for i in item_ids]
    vectors = np.random.default_rng(0).normal(size=(len(item_ids), 8)).astype(np.float32)
    store.write_embeddings("text", "fp", item_ids, hashes, vectors)
    store.write_current("text", "fp", pl.DataFrame({"item_id": item_ids, "content_hash": hashes}))


def _interactions(n_days: int, users=("u1", "u2", "u3"), items=("a", "b", "c")) -> pl.DataFrame:
    rows = [(u, items[(d + j) % len(items)], T0 + timedelta(days=d, hours=j))
            for d in range(n_days) for j, u in enumerate(users)]
    return pl.DataFrame(rows, schema={"user_id": pl.String, "item_id": pl.String, "ts": pl.Datetime("us", "UTC")},
                        orient="row")


def test_no_current_embeddings_says_run_extract(tmp_path):
    cfg = train_config(tmp_path, _interactions(30))
    with pytest.raises(TrainInputError, match=r"no current embeddings in .*Fix: run `make extract`"):
        run_training(cfg)


def test_empty_interactions_is_named(tmp_path):
    _store_with_text(tmp_path / "store", ["a", "b", "c"])
    cfg = train_config(tmp_path, _interactions(30).clear())
    with pytest.raises(TrainInputError, match=r"interactions file is empty"):
        run_training(cfg)
    assert not (tmp_path / "store" / "runs").exists()


def test_a_log_too_short_to_split_says_what_to_change(tmp_path):
    _store_with_text(tmp_path / "store", ["a", "b", "c"])
    cfg = train_config(tmp_path, _interactions(1), ["train.split.min_user_events=5"])
    with pytest.raises(SplitError, match=r"holds out no event"):
        run_training(cfg)
    assert not (tmp_path / "store" / "latest").exists()


@pytest.fixture(scope="module")
def clustered_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("clustered")
    cfg = train_config(tmp_path, clustered_store(tmp_path), ["train.tune.trials=2", "train.modalities=['text']"])
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
