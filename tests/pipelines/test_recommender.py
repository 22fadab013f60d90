"""The Recommender: the one object the protocols and the production fit use, saved into every run and loaded
back with one call. Tiny synthetic data, no Prefect."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pipelines.model.procedure import Catalog
from pipelines.model.recommender import Recommender, RecommenderError
from pipelines.train.flow import run_training
from pipelines.train.inputs import load_train_inputs
from pipelines.train.publish import similar_items_frame
from tests.train_helpers import clustered_store, train_config

N_NEW = 6
OVERRIDES = ["train.tune.trials=2", "train.modalities=['text']", "train.item_cold.enabled=false"]


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("published")
    cfg = train_config(tmp_path, clustered_store(tmp_path, n_new=N_NEW), OVERRIDES)
    return cfg, Path(run_training(cfg)["run_dir"])


def test_a_published_run_answers_with_the_lists_its_files_hold(published):
    cfg, run = published
    rec = Recommender.load(run)
    topk = pl.read_parquet(run / "topk.parquet").sort("user_id", "rank")
    users = topk["user_id"].unique(maintain_order=True).to_list()
    item_ids, scores = rec.recommend(users, k=cfg.train.top_k)
    got = pl.DataFrame({"user_id": np.repeat(users, item_ids.shape[1]), "rank": np.tile(
        np.arange(1, item_ids.shape[1] + 1), len(users)), "item_id": item_ids.ravel(), "score": scores.ravel()}
                       ).filter(pl.col("item_id").is_not_null())
    assert got["item_id"].to_list() == topk["item_id"].to_list()
    np.testing.assert_allclose(got["score"].to_numpy(), topk["score"].to_numpy(), rtol=1e-5)

    similar = pl.read_parquet(run / "similar_items.parquet")
    first = similar["item_id"][0]
    neighbours, _ = rec.similar_items([first], k=cfg.train.similar_k)
    expected = similar.filter(pl.col("item_id") == first).sort("rank")["similar_item_id"].to_list()
    assert [i for i in neighbours[0] if i is not None] == expected
    # built in item chunks: the same table whatever the chunk size
    assert similar_items_frame(rec, cfg.train.similar_k, chunk=7).equals(similar)


def test_unknown_users_get_the_popularity_list_and_new_items_are_reachable(published):
    _, run = published
    rec = Recommender.load(run)
    known, _ = rec.recommend(["u00"], k=5)
    unknown, unknown_scores = rec.recommend(["nobody", "u00"], k=5)
    assert unknown[1].tolist() == known[0].tolist()
    popularity = rec.model.level.sources["pop"].popularity  # the published popularity (its tuned mapping)
    order = np.lexsort((np.arange(len(popularity)), -popularity))[:5]
    assert unknown[0].tolist() == rec.item_ids[order].tolist()
    assert np.all(np.diff(unknown_scores[0]) <= 0)

    new_ids = {f"i{i:02d}" for i in range(60, 60 + N_NEW)}  # vectors, no interaction
    offered, _ = rec.recommend_new_items(["u00", "u01"], k=3)
    assert {i for i in offered.ravel() if i is not None} <= new_ids and offered[0][0] is not None
    neighbours, _ = rec.similar_items(["i60"], k=10)
    assert neighbours[0][0] is not None  # content reaches an item nobody has consumed
    nothing, nothing_scores = rec.similar_items(["no-such-item"], k=3)
    assert nothing.tolist() == [[None] * 3] and np.all(np.isneginf(nothing_scores))


def test_fit_is_deterministic_and_round_trips_through_save(tmp_path):
    cfg = train_config(tmp_path, clustered_store(tmp_path, n_new=N_NEW), OVERRIDES)
    inputs = load_train_inputs(cfg)
    catalog = Catalog(inputs.item_ids, inputs.tables, inputs.user_ids)
    first = Recommender.fit(inputs.interactions, catalog, cfg.train, "count")
    again = Recommender.fit(inputs.interactions, catalog, cfg.train, "count")
    users = list(inputs.user_ids[:10]) + ["stranger"]
    ids, scores = first.recommend(users, k=8)
    ids_again, scores_again = again.recommend(users, k=8)
    assert ids.tolist() == ids_again.tolist() and np.allclose(scores, scores_again)
    whole = again.candidate_lists(np.arange(12), 8)
    again.user_chunk = 3  # answering in small user chunks gives the same lists
    chunked, chunked_scores = again.recommend(users, k=8)
    assert chunked.tolist() == ids.tolist() and np.allclose(chunked_scores, scores)
    in_chunks = again.candidate_lists(np.arange(12), 8)
    assert whole.keys() == in_chunks.keys() and all(np.array_equal(whole[n], in_chunks[n]) for n in whole)

    first.save(tmp_path / "saved")
    loaded = Recommender.load(tmp_path / "saved")
    loaded_ids, loaded_scores = loaded.recommend(users, k=8)
    assert loaded_ids.tolist() == ids.tolist() and np.allclose(loaded_scores, scores)
    assert loaded.similar_items(["i00"], k=4)[0].tolist() == first.similar_items(["i00"], k=4)[0].tolist()
    seen = set(inputs.interactions.filter(pl.col("user_idx") == 0)["item_idx"].to_list())
    with_seen, _ = loaded.recommend([inputs.user_ids[0]], k=60, exclude_seen=False)
    assert {f"i{i:02d}" for i in seen} & set(with_seen[0]), "exclude_seen=False may return consumed items"


def test_loading_a_folder_that_is_not_a_run_is_a_named_error(tmp_path):
    with pytest.raises(RecommenderError, match=r"holds no recommender.json: not a published run"):
        Recommender.load(tmp_path)


def test_a_run_loads_in_a_fresh_process(published):
    _, run = published
    code = ("import sys; from pipelines.model.recommender import Recommender; "
            "r = Recommender.load(sys.argv[1]); ids, s = r.recommend(['u00'], k=3); print(','.join(ids[0]))")
    done = subprocess.run([sys.executable, "-c", code, str(run)], capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr[-2000:]
    expected = pl.read_parquet(run / "topk.parquet").filter(pl.col("user_id") == "u00").sort("rank")["item_id"][:3]
    assert done.stdout.strip().split(",") == expected.to_list()


def test_a_new_candidate_source_is_one_module_and_its_configuration(tmp_path):
    """tests/pipelines/toy_source.py registers "toy"; the configuration names its module and arguments and
    how many candidates its block proposes. No pipeline module knows about it."""
    cfg = train_config(tmp_path, clustered_store(tmp_path), [
        *OVERRIDES, "train.tune.enabled=false", "train.sources.toy.module='tests.pipelines.toy_source'",
        "train.sources.toy.boost=2.0", "train.candidates.depth.toy=5"])
    assert cfg.train.candidates.depth["als"] == 100  # one block set, the others kept
    inputs = load_train_inputs(cfg)
    rec = Recommender.fit(inputs.interactions, Catalog(inputs.item_ids, inputs.tables, inputs.user_ids), cfg.train,
                          "count")
    assert rec.model.level.sources["toy"].boost == 2.0
    lists = rec.candidate_lists(np.arange(5), 10)
    result = rec.model.level.run(np.arange(5), rec.model.plan(10))
    assert "toy" in lists and "toy_score" in result.candidates.columns
    assert "toy_score" in rec.model.level.features(result.candidates).feature_names
    rec.save(tmp_path / "saved")
    again = Recommender.load(tmp_path / "saved")
    assert again.recommend(["u00"], k=5)[0].tolist() == rec.recommend(["u00"], k=5)[0].tolist()

    with pytest.raises(Exception, match=r"source 'toy': unknown argument\(s\) \['boots'\]"):
        train_config(tmp_path, clustered_store(tmp_path), [
            *OVERRIDES, "train.sources.toy.module='tests.pipelines.toy_source'", "train.sources.toy.boots=2.0"])
