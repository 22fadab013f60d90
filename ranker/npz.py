"""Saving fitted numpy estimators as .npz (no pickle): a JSON meta entry naming the class, plus arrays."""

from __future__ import annotations

import json
import os

import numpy as np


def load_npz(path: str | os.PathLike, expected: str) -> tuple[dict, dict[str, np.ndarray]]:
    with np.load(path, allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    if "meta" not in arrays:
        raise ValueError(f"{os.fspath(path)!r} is not a saved {expected} (no 'meta' entry)")
    meta = json.loads(str(arrays.pop("meta")))
    if meta.get("class") != expected:
        raise ValueError(
            f"{os.fspath(path)!r} holds a {meta.get('class')!r}, not a {expected}; "
            f"load it with {meta.get('class')}.load"
        )
    return meta, arrays


def constructor_params(estimator) -> dict:
    """The constructor's keyword arguments: constructors store them and nothing else."""
    return {name: value for name, value in vars(estimator).items() if not name.endswith("_")}


def save_npz(path: str | os.PathLike, meta: dict, arrays: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as handle:  # a file handle keeps numpy from appending ".npz"
        np.savez(handle, meta=np.array(json.dumps(meta, sort_keys=True)), **arrays)
