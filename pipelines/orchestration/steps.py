"""One code path for both engines: a pipeline calls its named steps through a `RunStep`. `run_here` calls the
plain function (`--engine local`); `run_as_task` runs it as a Prefect task, so that the UI shows each step, its
time and its failure. Arguments and results stay in memory: nothing is hashed, cached or written to disk (inputs
such as DataFrames are neither hashable nor small)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol


class RunStep(Protocol):
    def __call__(self, name: str, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any: ...


def run_here(name: str, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    return fn(*args, **kwargs)


def run_as_task(name: str, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """The step as a Prefect task of the current flow run, in this thread; a failure raises as it would here."""
    from prefect import task
    from prefect.cache_policies import NONE

    return task(fn, name=name, persist_result=False, cache_policy=NONE)(*args, **kwargs)
