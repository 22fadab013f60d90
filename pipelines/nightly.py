"""The nightly batch as one Prefect flow (extract, then train), and its cron-scheduled deployment.

`python -m pipelines serve --cron "0 2 * * *"` registers the deployment and runs it on schedule (a long-lived
process, e.g. under systemd); plain cron calling `make extract && make train` is the zero-infrastructure option.
"""

from __future__ import annotations

from prefect import flow

from pipelines.config import load_config
from pipelines.extract import extract_flow
from pipelines.train import train_flow

DEFAULT_CRON = "0 2 * * *"


@flow(name="nightly", log_prints=True)
def nightly_flow(config_path: str | None = None, overrides: list[str] | None = None) -> dict:
    """Parameters are plain strings so that a scheduled deployment can carry them."""
    cfg = load_config(config_path, overrides or [])
    extracted = extract_flow(cfg)
    trained = train_flow(cfg)
    return {"extract_wall_s": extracted["wall_s"], "train_wall_s": trained["wall_s"], "run": trained["run_dir"]}


def nightly_deployment(config_path: str | None, overrides: list[str], cron: str = DEFAULT_CRON, name: str = "mmrec-nightly"):
    load_config(config_path, overrides)  # refuse to schedule a config that would fail at 2 a.m.
    return nightly_flow.to_deployment(name=name, cron=cron,
                                      parameters={"config_path": config_path, "overrides": overrides})
