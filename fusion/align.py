"""Join per-modality embedding tables onto one item list, with a presence mask.

Row i of every block is item ``item_ids[i]`` (its ``item_idx``); a modality an item lacks is a zero row
and a False in the mask, so downstream code never has to guess presence from a vector's norm.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from fusion.errors import AlignmentError, DuplicateItemError

logger = logging.getLogger(__name__)
MAX_SHOWN = 5


@dataclass(frozen=True)
class AlignedBlocks:
    """Per-modality float32 blocks (n, d_m) aligned on ``item_ids``; ``mask[i, j]``: item i has modality j."""

    item_ids: tuple[str, ...]
    modalities: tuple[str, ...]
    blocks: dict[str, np.ndarray]
    mask: np.ndarray

    def __post_init__(self) -> None:
        n, n_mod = len(self.item_ids), len(self.modalities)
        if self.mask.shape != (n, n_mod) or self.mask.dtype != np.bool_:
            raise AlignmentError(
                f"mask has shape {self.mask.shape} and dtype {self.mask.dtype}; expected bool ({n}, {n_mod}) "
                "for the item_ids and modalities given; build AlignedBlocks with align_modalities()"
            )
        if set(self.blocks) != set(self.modalities):
            raise AlignmentError(
                f"blocks has modalities {sorted(self.blocks)} but modalities is {list(self.modalities)}; "
                "they must name the same modalities"
            )
        for name in self.modalities:
            block = self.blocks[name]
            if block.ndim != 2 or block.shape[0] != n:
                raise AlignmentError(
                    f"block '{name}' has shape {block.shape}; expected ({n}, d) with one row per item"
                )

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def present(self, modality: str) -> np.ndarray:
        """Bool (n,): which items have ``modality``."""
        if modality not in self.modalities:
            raise AlignmentError(
                f"unknown modality '{modality}'; these blocks hold {list(self.modalities)}"
            )
        return self.mask[:, self.modalities.index(modality)]

    def dims(self) -> dict[str, int]:
        return {name: int(self.blocks[name].shape[1]) for name in self.modalities}


def _duplicates(ids: Sequence[str]) -> list[str]:
    values, counts = np.unique(np.asarray(ids, dtype=object).astype(str), return_counts=True)
    return [str(v) for v in values[counts > 1][:MAX_SHOWN]]


def _check_table(name: str, table_ids: Sequence[str], vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors)
    if vectors.ndim != 2 or vectors.shape[0] != len(table_ids):
        raise AlignmentError(
            f"modality '{name}': vectors have shape {vectors.shape} for {len(table_ids)} item ids; "
            "expected (n_ids, dim), one row per id"
        )
    vectors = vectors.astype(np.float32, copy=False)
    bad_rows = np.flatnonzero(~np.isfinite(vectors).all(axis=1))
    if bad_rows.size:
        shown = [str(table_ids[i]) for i in bad_rows[:MAX_SHOWN]]
        raise AlignmentError(
            f"modality '{name}': {bad_rows.size} vectors hold NaN or inf (items {shown}); "
            "drop those rows or re-extract them"
        )
    dups = _duplicates(table_ids)
    if dups:
        raise DuplicateItemError(
            f"modality '{name}' has duplicate item ids {dups}; keep one vector per item "
            "(e.g. the latest extraction) before aligning"
        )
    return vectors


def align_modalities(
    item_ids: Sequence[str],
    tables: Mapping[str, tuple[Sequence[str], np.ndarray]],
) -> AlignedBlocks:
    """Align ``{modality: (ids, vectors (m, d))}`` on ``item_ids``; modalities keep the mapping's order.

    Ids of a table that are not in ``item_ids`` are ignored (logged); duplicates raise DuplicateItemError.
    """
    item_ids = tuple(str(i) for i in item_ids)
    dups = _duplicates(item_ids)
    if dups:
        raise DuplicateItemError(f"item_ids has duplicates {dups}; pass each catalog item once")
    if not tables:
        raise AlignmentError("no modality tables given; pass at least one {modality: (item_ids, vectors)}")
    row_of = {item_id: row for row, item_id in enumerate(item_ids)}
    n = len(item_ids)
    modalities = tuple(tables)
    blocks: dict[str, np.ndarray] = {}
    mask = np.zeros((n, len(modalities)), dtype=bool)
    for col, name in enumerate(modalities):
        table_ids, vectors = tables[name]
        table_ids = [str(i) for i in table_ids]
        vectors = _check_table(name, table_ids, vectors)
        rows = np.fromiter((row_of.get(i, -1) for i in table_ids), dtype=np.int64, count=len(table_ids))
        known = rows >= 0
        if not known.all():
            logger.info("modality %s: %d vectors of items not in item_ids ignored", name, int((~known).sum()))
        block = np.zeros((n, vectors.shape[1]), dtype=np.float32)
        block[rows[known]] = vectors[known]
        blocks[name] = block
        mask[rows[known], col] = True
        logger.debug("modality %s: %d of %d items present", name, int(known.sum()), n)
    return AlignedBlocks(item_ids=item_ids, modalities=modalities, blocks=blocks, mask=mask)
