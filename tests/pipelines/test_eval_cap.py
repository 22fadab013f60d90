"""Evaluation at scale: a seeded cap on evaluated users, reported as "n of N users"."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipelines.train.flow import run_training
from pipelines.train.protocols import capped
from tests.train_helpers import clustered_store, train_config


def test_the_cap_is_a_seeded_sample_that_keeps_each_users_items():
    users = np.arange(100, 200)
    relevant = [np.array([u]) for u in users]
    kept, kept_relevant, eligible = capped(users, relevant, 10, seed=3, name="t")
    again, _, _ = capped(users, relevant, 10, seed=3, name="t")
    assert eligible == 100 and len(kept) == 10 and kept.tolist() == again.tolist()
    assert all(r[0] == u for u, r in zip(kept, kept_relevant, strict=True)) and np.all(np.diff(kept) > 0)
    assert capped(users, relevant, None, 0, "t")[0] is users and capped(users, relevant, 500, 0, "t")[2] == 100


def test_a_capped_run_reports_how_many_of_how_many_users(tmp_path):
    cfg = train_config(tmp_path, clustered_store(tmp_path), [
        "train.tune.enabled=false", "train.modalities=['text']", "train.item_cold.enabled=false",
        "train.eval.max_users=12", "train.eval.min_users=5"])
    result = run_training(cfg)
    temporal = result["metrics"]["temporal"]
    assert temporal["test_users"] == 12 and temporal["eligible_users"] > 12
    assert temporal["table"]["full"]["n_users"] == 12
    report = (tmp_path / "store" / "latest" / "report.txt").read_text()
    assert f"12 of {temporal['eligible_users']} users (seeded sample)" in report


def test_a_cadence_runs_the_protocols_on_one_run_in_n_and_says_so(tmp_path):
    """every=2: evaluated, skipped (the model fitted on everything, published with its validation guard),
    evaluated again."""
    interactions = clustered_store(tmp_path)
    cfg = train_config(tmp_path, interactions, [
        "train.tune.enabled=false", "train.modalities=['text']", "train.item_cold.enabled=false",
        "train.eval.every=2", "train.eval.min_users=5"])
    first = run_training(cfg)["metrics"]
    second = run_training(cfg)
    third = run_training(cfg)["metrics"]
    assert first["evaluation"]["evaluated"] and "temporal" in first
    skipped = second["metrics"]
    assert not skipped["evaluation"]["evaluated"] and "temporal" not in skipped
    assert skipped["evaluation"]["last_evaluated_run"] is not None
    report = (Path(second["run_dir"]) / "report.txt").read_text()
    assert "test protocols not run this time (train.eval.every = 2" in report
    assert (Path(second["run_dir"]) / "topk.parquet").exists() and skipped["production"]["published"]["model"]
    assert third["evaluation"]["evaluated"] and "temporal" in third
