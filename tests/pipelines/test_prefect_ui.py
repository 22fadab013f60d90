"""What a person sees in the Prefect UI for a train or extract run: one task per training step with its state,
the headline metrics and the published run as artifacts, the extraction summary as a table. Read back through
Prefect's own client, as the UI reads them, from one temporary server for the whole module."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from uuid import UUID

import httpx
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, FlowRunFilter, FlowRunFilterId
from prefect.testing.utilities import prefect_test_harness

from pipelines.config import load_config
from pipelines.extract import flow as extract_module
from pipelines.orchestration.artifacts import (
    EXTRACT_SUMMARY_KEY,
    TRAIN_METRICS_KEY,
    TRAIN_RUN_KEY,
    extract_summary_rows,
    publish_extract_artifacts,
    train_metrics_rows,
    train_run_markdown,
)
from pipelines.store.layout import Store
from pipelines.train import flow as train_module
from tests.train_helpers import clustered_store, train_config

TRAIN_STEPS = ["load-inputs", "evaluate-temporal", "evaluate-item-cold", "fit-production", "write-outputs",
               "publish-run"]


@pytest.fixture(scope="module")
def prefect_server():
    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="module")
def trained(prefect_server, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ui")
    cfg = train_config(tmp, clustered_store(tmp), ["train.tune.trials=1"])
    state = train_module.train_flow_body(cfg, return_state=True)
    return cfg, state.result(), state.state_details.flow_run_id


def task_runs(flow_run_id: UUID) -> list:
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return sorted(runs, key=lambda r: r.start_time or r.expected_start_time)


def task_name(run) -> str:
    return run.name.rsplit("-", 1)[0]  # a task run is named `<task name>-<suffix>`


def parent_of(run):
    parents = run.task_inputs.get("__parents__", [])
    return parents[0].id if parents else None


def task_states(flow_run_id: UUID) -> dict[str, str]:
    """The flow's own steps (not the stages nested in them): name -> final state, in the order they started."""
    return {task_name(run): run.state.type.value for run in task_runs(flow_run_id) if parent_of(run) is None}


def nested_stages(flow_run_id: UUID) -> dict[str, set[str]]:
    """Step name -> the names of the stage tasks that ran inside it."""
    runs = task_runs(flow_run_id)
    names = {run.id: task_name(run) for run in runs}
    out: dict[str, set[str]] = {}
    for run in runs:
        if parent_of(run) is not None:
            out.setdefault(names[parent_of(run)], set()).add(task_name(run))
    return out


def artifacts(flow_run_id: UUID) -> dict:
    """The keyed artifacts of a flow run (Prefect adds an unkeyed one holding a failed run's exception)."""
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    return {artifact.key: artifact for artifact in found if artifact.key}


def table(artifact) -> list[dict]:
    return json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data


@pytest.mark.flow
def test_each_training_step_is_a_completed_task(trained):
    _, _, flow_run_id = trained
    assert list(task_states(flow_run_id).items()) == [(name, "COMPLETED") for name in TRAIN_STEPS]
    # the fit procedure's own stages show inside the steps that fit: where a fit spends its time
    stages = nested_stages(flow_run_id)
    assert stages["evaluate-temporal"] == {"tune", "fuse", "candidates", "fit-ranker", "guard", "fit-sources"}
    assert stages["evaluate-item-cold"] == {"fuse", "candidates", "fit-ranker", "guard", "fit-sources"}  # tuned
    assert stages["fit-production"] == {"fit-sources"}  # the tested model, its sources refitted
    assert all(run.state.type.value == "COMPLETED" for run in task_runs(flow_run_id))


@pytest.mark.flow
def test_the_metrics_table_and_the_published_run_are_artifacts(trained):
    _, result, flow_run_id = trained
    found = artifacts(flow_run_id)
    assert set(found) == {TRAIN_METRICS_KEY, TRAIN_RUN_KEY}
    rows = table(found[TRAIN_METRICS_KEY])
    assert found[TRAIN_METRICS_KEY].type == "table" and rows == train_metrics_rows(result["metrics"])
    protocols = {row["protocol"] for row in rows}
    assert protocols == {"temporal", "item-cold held-out", "item-cold all items"}
    full = next(row for row in rows if row["protocol"] == "temporal" and row["model"] == "full")
    assert set(full) == {"protocol", "model", "ndcg@10", "ndcg@10 se", "ndcg@20", "ndcg@20 se", "users"}
    assert 0 < full["ndcg@10"] <= 1 and full["ndcg@10 se"] > 0
    assert full["users"] == result["metrics"]["temporal"]["test_users"]
    markdown = found[TRAIN_RUN_KEY]
    published = result["metrics"]["production"]["published"]
    assert markdown.type == "markdown"
    assert result["run_dir"] in markdown.data and f"{result['run_dir']}/report.html" in markdown.data
    assert published["model"] in markdown.data and published["why"] in markdown.data


@pytest.mark.flow
def test_a_failing_step_shows_failed_and_leaves_no_half_run(trained, monkeypatch):
    cfg, result, _ = trained
    store = Store(Path(cfg.store.root))

    def broken_fit(*args, **kwargs):
        raise RuntimeError("the production fit failed")

    monkeypatch.setattr(train_module, "fit_production", broken_fit)
    fast = cfg.model_copy(update={"train": cfg.train.model_copy(update={"item_cold": cfg.train.item_cold.model_copy(
        update={"enabled": False})})})
    state = train_module.train_flow_body(fast, return_state=True)
    assert state.is_failed()
    assert task_states(state.state_details.flow_run_id) == {
        "load-inputs": "COMPLETED", "evaluate-temporal": "COMPLETED", "fit-production": "FAILED"}
    assert artifacts(state.state_details.flow_run_id) == {}  # nothing published, nothing claimed
    assert store.latest_run() == Path(result["run_dir"]).resolve()  # `latest` untouched
    assert [run.name for run in store.runs_dir.iterdir()] == [store.latest_run().name]


@pytest.mark.flow
def test_the_extraction_summary_is_a_table_artifact(prefect_server, monkeypatch):
    report = {"catalog_items": 12, "wall_s": 3.5, "modalities": [
        {"modality": "text", "extractor": "text/hf", "total": 12, "unchanged": 4, "known_failed": 1, "embedded": 6,
         "failed": {"empty": 1, "too_long": 1}, "items_per_s": 2.5, "wall_s": 3.4}]}
    monkeypatch.setattr(extract_module, "run_extraction", lambda cfg, map_shards: report)
    state = extract_module.extract_flow_body(load_config(None, []), return_state=True)
    found = artifacts(state.state_details.flow_run_id)
    assert set(found) == {EXTRACT_SUMMARY_KEY}
    assert table(found[EXTRACT_SUMMARY_KEY]) == extract_summary_rows(report) == [
        {"modality": "text", "extractor": "text/hf", "total": 12, "embedded": 6, "unchanged": 4, "known failures": 1,
         "failed": 2, "failed by kind": "empty=1, too_long=1", "items/s": 2.5, "wall s": 3.4}]


def test_a_prefect_api_failing_after_the_run_costs_the_artifact_not_the_run(monkeypatch, caplog):
    import prefect.artifacts

    def unreachable(*args, **kwargs):
        raise httpx.ConnectError("connection refused")

    monkeypatch.setattr(prefect.artifacts, "create_table_artifact", unreachable)
    report = {"catalog_items": 0, "wall_s": 0.1, "modalities": []}
    with caplog.at_level(logging.WARNING):
        publish_extract_artifacts(report)  # no raise
    assert "Prefect artifacts of the extraction not written" in caplog.text and "PREFECT_API_URL" in caplog.text


def test_a_run_that_skips_the_protocols_has_no_metrics_rows_and_says_why():
    last = "20261101T020000Z-abc123"
    metrics = {"weight_kind": "count",
               "evaluation": {"evaluated": False, "last_evaluated_run": last,
                              "why": f"train.eval.every = 3: 1 run(s) published since the last evaluated one ({last})"},
               "production": {"published": {"model": "ranker", "why": "the ranker beat every source",
                                            "new_item_scorer": "content", "new_item_positions": [10, 20]},
                              "users": 5, "fallback_users": 1, "new_items": 2, "index_kind": "flat"}}
    result = {"run_dir": "/srv/store/runs/20261102T020000Z-def456", "wall_s": 12.5, "metrics": metrics}
    assert train_metrics_rows(metrics) == []
    text = train_run_markdown(result)
    assert "/srv/store/runs/20261102T020000Z-def456/report.html" in text
    assert "no (train.eval.every = 3" in text and f"last evaluated run: {last}" in text
