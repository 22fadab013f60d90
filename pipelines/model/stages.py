"""Named stages of the fit procedure (tune, fuse, candidates, fit-ranker, guard, fit-sources), run through a
runner the caller installs: a plain call by default, a nested Prefect task when the train flow installs one, so
that the UI shows where a fit spends its time. No Prefect here: the model package stays free of orchestration."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

_RUNNER: ContextVar[Callable[..., Any] | None] = ContextVar("stage_runner", default=None)


def stage(name: str, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)``, through the installed runner (as the step ``name``) when there is one."""
    runner = _RUNNER.get()
    return fn(*args, **kwargs) if runner is None else runner(name, fn, *args, **kwargs)


@contextmanager
def stages_run_by(runner: Callable[..., Any] | None) -> Iterator[None]:
    """Within this block, every ``stage`` call goes through ``runner(name, fn, *args, **kwargs)``."""
    token = _RUNNER.set(runner)
    try:
        yield
    finally:
        _RUNNER.reset(token)
