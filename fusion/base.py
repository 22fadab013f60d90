"""What the three fusion methods share: per-modality normalisers, block checks, and save/load of config.

A fitted fusion directory holds ``fusion.json`` (method, constructor parameters, fitted modalities and
dims), one ``norm_<modality>.npz`` per modality, and whatever state the method adds.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from fusion.align import AlignedBlocks
from fusion.errors import FusionInputError, NotFittedError
from fusion.normalize import BlockNormalizer

logger = logging.getLogger(__name__)
CONFIG_NAME = "fusion.json"


def check_weights(weights: Mapping[str, float], modalities: tuple[str, ...]) -> dict[str, float]:
    """Weights for exactly ``modalities``; extra entries (modalities these blocks lack) are ignored."""
    missing = [m for m in modalities if m not in weights]
    if missing:
        raise FusionInputError(
            f"weights {dict(weights)} have no entry for modalities {missing}; give a weight for each of "
            f"{list(modalities)} (0 drops a modality)"
        )
    chosen = {m: float(weights[m]) for m in modalities}
    bad = {m: w for m, w in chosen.items() if not np.isfinite(w) or w < 0}
    if bad:
        raise FusionInputError(f"weights {bad} must be finite and >= 0")
    if not any(w > 0 for w in chosen.values()):
        raise FusionInputError(f"all weights {chosen} are 0; give at least one modality a positive weight")
    ignored = sorted(set(weights) - set(modalities))
    if ignored:
        logger.info("weights for modalities %s ignored: these blocks do not hold them", ignored)
    return chosen


class FusionBase:
    """Shared fit/transform plumbing; subclasses define ``method``, ``get_params`` and the fused map."""

    method = ""
    # What fit() learns from besides the vectors: "pairs" (co-consumed item pairs), "targets" (an embedding per
    # item, NaN rows = none). Empty: a fixed map of the vectors. The pipeline supplies exactly these.
    learns_from: frozenset[str] = frozenset()
    # Whether the map takes per-modality weights (and so whether they can be tuned).
    takes_weights: bool = False

    def get_params(self) -> dict:
        raise NotImplementedError

    def _make_normalizer(self, modality: str, input_dim: int) -> BlockNormalizer:
        return BlockNormalizer(center=True)

    def _fit_normalizers(self, blocks: AlignedBlocks) -> dict[str, np.ndarray]:
        """Fit one normaliser per modality on its present rows; return the normalised blocks."""
        self.modalities_ = tuple(blocks.modalities)
        self.input_dims_ = blocks.dims()
        self.normalizers_ = {}
        out = {}
        for name in self.modalities_:
            present = blocks.present(name)
            if not present.any():
                raise FusionInputError(
                    f"modality '{name}' is present for no item; drop it from the tables or extract it first"
                )
            norm = self._make_normalizer(name, self.input_dims_[name])
            out[name] = norm.fit_transform(blocks.blocks[name], present)
            self.normalizers_[name] = norm
        return out

    def fit_samples(self, samples: Iterable[tuple[str, np.ndarray]]):
        """Fit on ``(modality, present rows)`` samples, one modality at a time, for a fusion that learns nothing
        but its normalisers: a large catalog fits on a seeded sample, then is fused in streamed batches."""
        if self.learns_from:
            raise FusionInputError(f"'{self.method}' fusion learns from {sorted(self.learns_from)}: fit it on the "
                                   "aligned blocks of the whole catalog with fit(blocks, ...)")
        self._check_params()
        self.modalities_, self.input_dims_, self.normalizers_ = (), {}, {}
        for name, rows in samples:
            if len(rows) == 0:
                raise FusionInputError(f"modality '{name}' has no rows to fit on; drop it or extract it first")
            self.normalizers_[name] = self._make_normalizer(name, int(rows.shape[1])).fit(rows)
            self.modalities_ += (name,)
            self.input_dims_[name] = int(rows.shape[1])
        return self._complete_fit()

    def _check_params(self) -> None:
        """Constructor parameters checked before fitting (none by default)."""

    def _complete_fit(self):
        """What a fit sets once the normalisers are fitted (weights, output dim); returns self."""
        raise NotImplementedError

    def _check_fitted(self) -> None:
        if not hasattr(self, "dim_"):
            raise NotFittedError(
                f"this {type(self).__name__} is not fitted; call fit(blocks) or {type(self).__name__}.load(dir)"
            )

    def _normalized(self, blocks: AlignedBlocks) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Normalised blocks and the mask, in the fitted modality order."""
        self._check_fitted()
        missing = [m for m in self.modalities_ if m not in blocks.modalities]
        if missing:
            raise FusionInputError(
                f"blocks lack modalities {missing} this fusion was fitted on ({list(self.modalities_)}); "
                "align all of them (a table with no rows is fine) or refit"
            )
        wrong = {m: blocks.dims()[m] for m in self.modalities_ if blocks.dims()[m] != self.input_dims_[m]}
        if wrong:
            raise FusionInputError(
                f"block dims {wrong} differ from the fitted dims {self.input_dims_}; the extractor changed, refit"
            )
        normed = {m: self.normalizers_[m].transform(blocks.blocks[m], blocks.present(m)) for m in self.modalities_}
        mask = np.stack([blocks.present(m) for m in self.modalities_], axis=1)
        return normed, mask

    def save(self, directory: str | os.PathLike) -> None:
        self._check_fitted()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        for name, norm in self.normalizers_.items():
            norm.save(directory / f"norm_{name}.npz")
        self._save_state(directory)
        config = {
            "method": self.method,
            "params": self.get_params(),
            "modalities": list(self.modalities_),
            "input_dims": self.input_dims_,
            "dim": self.dim_,
        }
        tmp = directory / (CONFIG_NAME + ".tmp")
        tmp.write_text(json.dumps(config, indent=2, sort_keys=True))
        os.replace(tmp, directory / CONFIG_NAME)  # written last: a directory with fusion.json is complete

    @classmethod
    def load(cls, directory: str | os.PathLike):
        directory = Path(directory)
        config = read_config(directory)
        if config["method"] != cls.method:
            raise FusionInputError(
                f"{directory} holds a '{config['method']}' fusion, not '{cls.method}'; "
                "load it with fusion.load_fusion(dir)"
            )
        fusion = cls(**config["params"])
        fusion.modalities_ = tuple(config["modalities"])
        fusion.input_dims_ = {m: int(d) for m, d in config["input_dims"].items()}
        fusion.normalizers_ = {m: BlockNormalizer.load(directory / f"norm_{m}.npz") for m in fusion.modalities_}
        fusion._load_state(directory)
        fusion.dim_ = int(config["dim"])
        return fusion

    def _save_state(self, directory: Path) -> None:
        """Method-specific fitted state beyond the normalisers (none by default)."""

    def _load_state(self, directory: Path) -> None:
        """Restore what _save_state wrote."""

    def fuse(self, normed: dict[str, np.ndarray], mask: np.ndarray) -> np.ndarray:
        """Fused rows from blocks already normalised by this fusion's normalisers (``mask``: bool (n, modalities)
        in the fitted order): what transform() does after normalising, usable on item chunks."""
        raise NotImplementedError

    def transform(self, blocks: AlignedBlocks) -> np.ndarray:
        return self.fuse(*self._normalized(blocks))

    def fit_transform(self, blocks: AlignedBlocks, **fit_kwargs) -> np.ndarray:
        return self.fit(blocks, **fit_kwargs).transform(blocks)


def read_config(directory: Path) -> dict:
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise FusionInputError(f"{path} not found: {directory} is not a saved fusion; save one with fusion.save(dir)")
    return json.loads(path.read_text())
