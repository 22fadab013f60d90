"""The nightly batch as one Prefect flow (extract, then train), and its cron-scheduled deployment.

A schedule fires only on a real Prefect server, whose scheduler service creates the flow runs: `make server`
runs `prefect server start` on loopback and `make serve` serves the `mmrec-nightly` deployment against it
(`python -m pipelines serve` refuses Prefect's temporary server, where no run would ever be created). Plain cron
calling `make extract && make train` is the zero-infrastructure option.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from pipelines.config import ConfigError, load_config
from pipelines.extract.flow import extract_flow
from pipelines.train.flow import train_flow

DEFAULT_CRON = "0 2 * * *"
DEPLOYMENT_NAME = "mmrec-nightly"


@flow(name="nightly", log_prints=True)
def nightly_flow(config_path: str | None = None, overrides: list[str] | None = None) -> dict:
    """Parameters are plain strings so that a scheduled deployment can carry them."""
    cfg = load_config(config_path, overrides or [])
    extracted = extract_flow(cfg)
    trained = train_flow(cfg)
    return {"extract_wall_s": extracted["wall_s"], "train_wall_s": trained["wall_s"], "run": trained["run_dir"]}


def cron_schedule(cron: str, timezone: str | None = None):
    """A Prefect cron schedule (UTC unless `timezone` names an IANA zone); a bad expression is a ConfigError."""
    from prefect.client.schemas.schedules import CronSchedule

    try:
        return CronSchedule(cron=cron, timezone=timezone)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        why = exc.errors()[0]["msg"] if hasattr(exc, "errors") else str(exc)
        raise ConfigError(f"--cron {cron!r} --timezone {timezone!r}: not a valid schedule ({why}). Fix: five "
                          "fields, minute hour day month weekday (\"0 2 * * *\" = 02:00 daily), and an IANA zone "
                          "such as Europe/Paris.") from exc


def nightly_deployment(config_path: str | None, overrides: list[str], cron: str = DEFAULT_CRON,
                       name: str = DEPLOYMENT_NAME, timezone: str | None = None):
    load_config(config_path, overrides)  # refuse to schedule a config that would fail at 2 a.m.
    schedule = cron_schedule(cron, timezone)
    # absolute, so that a flow run started from another working directory reads the same file
    config_path = str(Path(config_path).resolve()) if config_path else None
    return nightly_flow.to_deployment(name=name, schedule=schedule,
                                      parameters={"config_path": config_path, "overrides": overrides})
