"""The Prefect runner of the training steps: `run_training` runs every named step, and every stage of the fit
procedure (`pipelines/model/stages.py`), through a runner; plain calls by default (`--engine local`), and
`run_as_task` in the train flow, so that the UI shows each step and stage, its time and its failure. Arguments
and results stay in memory: nothing is hashed, cached or written to disk (inputs such as DataFrames are neither
hashable nor small)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def run_as_task(name: str, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """The step as a Prefect task of the current flow run, in this thread; a failure raises as it would here."""
    from prefect import task
    from prefect.cache_policies import NONE

    return task(fn, name=name, persist_result=False, cache_policy=NONE)(*args, **kwargs)
