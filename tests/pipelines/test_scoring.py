"""Scale-out of scoring: the published lists scored in user partitions, in this process or on a Dask cluster
whose workers load the saved model, are identical to the published topk.parquet."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from pipelines.model.config import ScoringConfig
from pipelines.model.recommender import Recommender
from pipelines.train.flow import run_training
from pipelines.train.scoring import partition_users, topk_frame
from tests.train_helpers import clustered_store, train_config


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    tmp_path = tmp_path_factory.mktemp("scoring")
    cfg = train_config(tmp_path, clustered_store(tmp_path), [
        "train.tune.enabled=false", "train.modalities=['text']", "train.item_cold.enabled=false",
        "train.eval.every=0", "train.scoring.partition_users=7"])
    return Path(run_training(cfg)["run_dir"])


def test_partitions_cover_every_user_once():
    parts = partition_users(23, 7)
    assert [len(p) for p in parts] == [7, 7, 7, 2]
    assert sorted(u for p in parts for u in p.tolist()) == list(range(23))


def test_local_partitions_and_dask_give_the_published_lists(run):
    published = pl.read_parquet(run / "topk.parquet")
    rec = Recommender.load(run)
    k = int(published["rank"].max())
    whole = topk_frame(rec, k, ScoringConfig(partition_users=10_000))
    assert whole.equals(published)
    on_dask = topk_frame(rec, k, ScoringConfig(engine="dask", partition_users=9, workers=2), run)
    assert on_dask.equals(published)
