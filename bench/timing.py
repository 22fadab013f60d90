"""Timing helpers: repeated wall-clock measurements, reported as a median, never asserted against a number.

A benchmark compares "ours" with a baseline run in the same process; `interleaved_times` alternates the
candidates round by round so that a slow spell of the machine (another process, thermal throttling) hits
both sides instead of biasing the ratio.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any


def summary(times: list[float]) -> dict[str, Any]:
    """{"times_s": [...], "median_s": m, "min_s": ..., "max_s": ...} of some measured durations (seconds)."""
    if not times:
        raise ValueError("no measurements to summarise")
    return {"times_s": [round(t, 6) for t in times], "median_s": round(statistics.median(times), 6),
            "min_s": round(min(times), 6), "max_s": round(max(times), 6), "repeats": len(times)}


def median_time(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> dict[str, Any]:
    """Call ``fn`` ``warmup`` times untimed, then ``repeats`` times timed; the durations and their median."""
    if repeats < 1:
        raise ValueError(f"repeats={repeats} must be >= 1")
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return summary(times)


def interleaved_times(fns: dict[str, Callable[[], Any]], repeats: int, warmup: int = 1) -> dict[str, dict[str, Any]]:
    """Like `median_time` for several candidates, alternating them each round (A B A B ...)."""
    if repeats < 1:
        raise ValueError(f"repeats={repeats} must be >= 1")
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            started = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - started)
    return {name: summary(values) for name, values in times.items()}


def ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, rounded; inf when the denominator is 0."""
    return round(numerator / denominator, 3) if denominator > 0 else float("inf")


def row(benchmark: str, *, ours: str, baseline: str, value: float | None, shown: str, goal: str,
        met: bool | None, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """One line of the results table; ``value`` is the measured number compared with the goal (a ratio or a
    recall), ``shown`` its display; ``met`` None means there is no goal for this line (context only)."""
    return {"benchmark": benchmark, "ours": ours, "baseline": baseline, "value": value, "ratio": shown,
            "goal": goal, "met": met, **({"details": details} if details else {})}


def fmt_s(seconds: float) -> str:
    if seconds >= 10:
        return f"{seconds:.1f} s"
    if seconds >= 0.1:
        return f"{seconds:.2f} s"
    return f"{seconds * 1000:.1f} ms"
