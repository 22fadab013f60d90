"""The report's charts as PNG data URIs. Drawn on an Agg canvas owned by each figure (no pyplot, no global
backend), so a report written inside a worker or a Prefect task touches no shared matplotlib state."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

HIGHLIGHT, PLAIN, ACCENT = "#d62728", "#4c72b0", "#2ca02c"


def _figure(width: float = 7.0, height: float = 3.6) -> Figure:
    figure = Figure(figsize=(width, height), dpi=90, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def data_uri(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def bars(labels: Sequence[str], values: Sequence[float], errors: Sequence[float] | None, title: str,
         xlabel: str, highlight: Sequence[str] = ()) -> str:
    """Horizontal bars (first label on top), error bars of one standard error when given."""
    figure = _figure(7.0, 0.8 + 0.28 * len(labels))
    axes = figure.add_subplot()
    y = np.arange(len(labels))[::-1]
    colours = [HIGHLIGHT if label in highlight else PLAIN for label in labels]
    axes.barh(y, values, xerr=errors, color=colours, capsize=2 if errors is not None else 0)
    axes.set_yticks(y, labels)
    axes.set_xlabel(xlabel)
    axes.set_title(title, fontsize=10)
    axes.grid(axis="x", alpha=0.3)
    return data_uri(figure)


def grouped_bars(groups: Sequence[str], series: dict[str, tuple[list[float], list[float]]], title: str,
                 ylabel: str) -> str:
    """One cluster of bars per group, one bar per series (value, stderr), e.g. modalities x protocols."""
    figure = _figure()
    axes = figure.add_subplot()
    x, width = np.arange(len(groups)), 0.8 / max(len(series), 1)
    for j, (name, (values, errors)) in enumerate(series.items()):
        axes.bar(x + (j - (len(series) - 1) / 2) * width, values, width, yerr=errors, capsize=2, label=name)
    axes.set_xticks(x, groups, rotation=20, ha="right")
    axes.set_ylabel(ylabel)
    axes.set_title(title, fontsize=10)
    axes.grid(axis="y", alpha=0.3)
    axes.legend(fontsize=8)
    return data_uri(figure)


def lines(curves: dict[str, tuple[np.ndarray, np.ndarray]], title: str, xlabel: str, ylabel: str,
          diagonal: bool = False) -> str:
    figure = _figure(6.0, 4.0)
    axes = figure.add_subplot()
    for name, (x, y) in curves.items():
        axes.plot(x, y, label=name, marker="o" if len(x) <= 40 else None, markersize=3)
    if diagonal:
        axes.plot([0, 1], [0, 1], color="grey", linestyle=":", label="uniform")
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_title(title, fontsize=10)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    return data_uri(figure)


def scatter_groups(points: np.ndarray, labels: np.ndarray, title: str, xlabel: str, ylabel: str) -> str:
    """2-D points coloured by label, largest groups drawn first so that small ones stay visible."""
    figure = _figure(6.5, 5.0)
    axes = figure.add_subplot()
    names, counts = np.unique(labels.astype(str), return_counts=True)
    for name in names[np.argsort(-counts)]:
        mine = labels.astype(str) == name
        axes.scatter(points[mine, 0], points[mine, 1], s=6, alpha=0.6, label=f"{name} ({int(mine.sum())})")
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_title(title, fontsize=10)
    axes.legend(fontsize=7, markerscale=2, loc="best")
    return data_uri(figure)


def trial_panels(studies: dict[str, list[tuple[int, float]]], defaults: dict[str, float | None]) -> str:
    """One small panel per tuning study: validation score per trial, the best so far, the configured values."""
    names = list(studies)
    cols = min(3, len(names))
    rows = -(-len(names) // cols)
    figure = _figure(3.0 * cols, 2.4 * rows)
    for i, name in enumerate(names):
        axes = figure.add_subplot(rows, cols, i + 1)
        numbers = np.array([n for n, _ in studies[name]], dtype=float)
        values = np.array([v for _, v in studies[name]], dtype=float)
        axes.scatter(numbers, values, s=12, color=PLAIN)
        if len(values):  # finite values only: the caller drops failed trials
            axes.step(numbers, np.maximum.accumulate(values), where="post", color=ACCENT, label="best so far")
        if defaults.get(name) is not None:
            axes.axhline(defaults[name], color=HIGHLIGHT, linestyle="--", label="configured values")
        axes.set_title(name, fontsize=9)
        axes.set_xlabel("trial", fontsize=8)
        axes.tick_params(labelsize=7)
        axes.grid(alpha=0.3)
        if i == 0:
            axes.legend(fontsize=7)
    return data_uri(figure)
