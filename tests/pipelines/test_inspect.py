"""The inspection commands (recs, similar, runs) on a tiny published run: they read the saved model, show the
lists the run published, explain a LightGBM ranker's scores exactly, and answer unknown ids with one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pipelines.cli import EXIT_INVALID, EXIT_OK, main
from pipelines.inspection.explain import describe, phrase
from pipelines.inspection.open_run import open_run
from pipelines.inspection.recs import NEW_ITEM_SLOT, user_recommendations
from pipelines.train.flow import run_training
from tests.train_helpers import clustered_store, train_config

N_NEW = 4
UNTITLED = "i01"  # the catalog has no title for it: the commands show its id


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("inspect")
    interactions = clustered_store(tmp_path, n_new=N_NEW)
    ids = [f"i{i:02d}" for i in range(60 + N_NEW)]
    pl.DataFrame({"item_id": ids, "title": [None if i == UNTITLED else f"Title of {i}" for i in ids]}).write_parquet(
        tmp_path / "c.parquet")
    cfg = train_config(tmp_path, interactions, ["train.tune.enabled=false", "train.modalities=['text']",
                                                "train.item_cold.enabled=false", "train.eval.every=0"])
    run = Path(run_training(cfg)["run_dir"])
    return cfg, run, [f"--set=store.root='{tmp_path / 'store'}'"]


def _run_cli(argv, capsys) -> tuple[int, str, str]:
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_recs_shows_the_published_list_with_its_sources(trained, capsys):
    cfg, run, store = trained
    opened = open_run(cfg, str(run))
    published = pl.read_parquet(run / "topk.parquet").filter(pl.col("user_id") == "u00").sort("rank")
    items = user_recommendations(opened, 0, cfg.train.top_k)
    assert [str(opened.rec.item_ids[i.item_idx]) for i in items] == published["item_id"].to_list()
    np.testing.assert_allclose([i.score for i in items], published["score"].to_numpy(), rtol=1e-5)
    assert [i.placed_by for i in items] == published["source"].to_list()
    fitted = opened.rec.model  # "found by" names exactly the proposals the candidate step counted
    candidates = fitted.level.run(np.array([0]), fitted.plan(cfg.train.top_k)).candidates
    n_sources = dict(zip(candidates["item_idx"].to_list(), candidates["n_sources"].to_list(), strict=True))
    assert [len(i.found_by) + len(i.found_new) for i in items] == [n_sources.get(i.item_idx, 0) for i in items]

    code, out, _ = _run_cli(["recs", "--user", "u00", "--k", "10", *store], capsys)
    assert code == EXIT_OK
    assert "history: 30 events in the run, the last 10 newest first:" in out
    assert out.count("found by:") == 10 and "Title of " in out
    if opened.rec.model.published != "ranker":
        assert f"ranked by {opened.rec.model.published}, not the ranker" in out
    slots = [i for i in items[:10] if i.placed_by == NEW_ITEM_SLOT]
    assert bool(slots) == ("new-item slot" in out)


def test_ranker_contributions_add_up_to_the_ranked_score(trained, capsys):
    cfg, run, _ = trained
    opened = open_run(cfg, str(run))
    opened.rec.model.published = "ranker"  # explain the ranker whatever the guard chose (the run saves it)
    users = np.arange(5)
    expected = opened.rec.lists(users, 10)
    for user in users:
        items = user_recommendations(opened, int(user), 10)
        assert [i.item_idx for i in items] == [i for i in expected.idx[user].tolist() if i >= 0]
        ranked = [i for i in items if i.placed_by == "ranker"]
        assert ranked and all(i.contributions is not None for i in ranked)
        sums = np.array([i.contributions.sum() for i in ranked])
        np.testing.assert_allclose(sums, [i.score for i in ranked], atol=1e-4)
    names = opened.rec.model.ranker.feature_names_
    words = describe(ranked[0].contributions, names)
    assert "base" in words and "other features" in words

    code, out, _ = _run_cli(["recs", "--user", "u01", "--k", "5", "--ranker", *trained[2]], capsys)
    assert code == EXIT_OK and out.count("      why: ") == 5 and "ranked by the LightGBM ranker" in out


def test_feature_phrases_fall_back_to_the_raw_name():
    assert phrase("content_image_score") == "image similarity"
    assert phrase("als_score") == "ALS score"
    assert phrase("item_n_last_7d") == "recent popularity (7 days)"
    assert phrase("some_new_feature") == "some_new_feature"
    row = np.array([0.41, -0.05, 0.30, 0.0, -0.2])
    assert describe(row, ("content_image_score", "n_sources", "als_score", "pop_score"), shown=2) == (
        "image similarity +0.41, ALS score +0.30; other features -0.05, base -0.20")


def test_similar_shows_the_neighbours_and_their_modalities(trained, capsys):
    cfg, run, store = trained
    opened = open_run(cfg, str(run))
    neighbours, _ = opened.rec.similar_items(["i00"], k=5)
    code, out, _ = _run_cli(["similar", "--item", "i00", "--k", "5", "--run", run.name, *store], capsys)
    assert code == EXIT_OK
    listed = [line.split()[1] for line in out.splitlines() if line[:4].strip().rstrip(".").isdigit()]
    assert listed == neighbours[0].tolist()
    assert out.count("agree:") == 5 and "text " in out


def test_runs_lists_the_published_run(trained, capsys):
    _, run, store = trained
    code, out, _ = _run_cli(["runs", *store], capsys)
    assert code == EXIT_OK
    marked = [line for line in out.splitlines() if line.startswith("* ")]
    assert len(marked) == 1 and run.name in marked[0] and "no (last evaluated: none)" in marked[0]


@pytest.mark.parametrize("argv, words", [
    (["recs", "--user", "nobody"], "unknown user 'nobody'"),
    (["similar", "--item", "nothing"], "unknown item 'nothing'"),
    (["recs", "--user", "u00", "--run", "20990101T000000Z-none"], "unknown run '20990101T000000Z-none'"),
])
def test_unknown_ids_get_one_line_and_exit_2(trained, capsys, argv, words):
    code, out, err = _run_cli([*argv, *trained[2]], capsys)
    assert code == EXIT_INVALID and out == ""
    assert len(err.strip().splitlines()) == 1 and words in err and "Traceback" not in err
