"""Batching helpers: length-sorted batches, and decoding in DataLoader workers.

Decoding errors are data, not exceptions: a decode function raises
``ItemFailure(kind, message)`` for a bad input, the dataset turns it into an
``ItemError`` and the batch goes on without that item.

Inside a daemonic process (a Dask worker, a multiprocessing pool worker) a
DataLoader cannot start worker processes ("daemonic processes are not allowed
to have children"): decoding then runs in the calling process, logged once.
Vectors do not depend on where decoding runs.
"""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from extractors.base import ExtractResult, ItemError, ItemFailure, assemble_result
from extractors.files import is_transient_error

logger = logging.getLogger(__name__)
_warned_daemonic = False


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[np.ndarray]:
    """Index batches, longest first (stable), so each batch pads to similar lengths.

    Callers write each batch's outputs back at these indices, which restores
    input order.
    """
    order = np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable")
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


class DecodedBatch(NamedTuple):
    """What a decode loader yields: the decoded items of one batch, and the failures."""

    indices: list[int]  # input positions of the decoded items, in batch order
    payload: Any  # a stacked tensor (stack_collate) or a list (list_collate); None if all failed
    errors: list[ItemError]


class _DecodeDataset(Dataset):
    def __init__(self, inputs: Sequence[Any], decode: Callable[[Any], Any]):
        self.inputs = list(inputs)
        self.decode = decode

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, item_idx: int) -> tuple[int, Any, ItemError | None]:
        try:
            return item_idx, self.decode(self.inputs[item_idx]), None
        except ItemFailure as failure:
            return item_idx, None, ItemError(item_idx, failure.kind, failure.message)
        except Exception as exc:  # a decoder bug on one odd file must not fail the whole shard
            logger.warning("unexpected error decoding input %d (%r)", item_idx, self.inputs[item_idx], exc_info=True)
            # an IO or memory hiccup says nothing about the file: retried next run; anything else is settled
            kind = "transient" if is_transient_error(exc) or isinstance(exc, MemoryError) else "decode"
            return item_idx, None, ItemError(item_idx, kind, f"{type(exc).__name__}: {exc}")


def _split(samples: list[tuple[int, Any, ItemError | None]]) -> tuple[list[int], list[Any], list[ItemError]]:
    indices, payloads, errors = [], [], []
    for item_idx, payload, error in samples:
        if error is not None:
            errors.append(error)
        else:
            indices.append(item_idx)
            payloads.append(payload)
    return indices, payloads, errors


def stack_collate(samples: list[tuple[int, Any, ItemError | None]]) -> DecodedBatch:
    """Stack same-shape tensors into one (pinnable) batch tensor."""
    indices, payloads, errors = _split(samples)
    return DecodedBatch(indices, torch.stack(payloads) if payloads else None, errors)


def list_collate(samples: list[tuple[int, Any, ItemError | None]]) -> DecodedBatch:
    """Keep variable-size payloads (audio windows, frame stacks) as a list."""
    indices, payloads, errors = _split(samples)
    return DecodedBatch(indices, payloads if payloads else None, errors)


def loader_workers(num_workers: int, n_batches: int) -> int:
    """DataLoader worker processes to start: none for tiny inputs, none inside a daemonic process."""
    global _warned_daemonic
    wanted = min(num_workers, n_batches)  # no idle workers for small shards
    if wanted > 0 and multiprocessing.current_process().daemon:
        if not _warned_daemonic:
            _warned_daemonic = True
            logger.info("decoding in-process: %s is daemonic (e.g. a Dask worker) and cannot start "
                        "num_workers=%d DataLoader workers", multiprocessing.current_process().name, num_workers)
        return 0
    return wanted


def decode_batches(
    inputs: Sequence[Any],
    decode: Callable[[Any], Any],
    *,
    batch_size: int,
    num_workers: int,
    collate: Callable[[list], DecodedBatch] = stack_collate,
    pin_memory: bool = False,
) -> Iterator[DecodedBatch]:
    """Decode ``inputs`` in ``num_workers`` DataLoader workers (0: in this process), in input order."""
    n_batches = -(-len(inputs) // batch_size)
    loader = DataLoader(
        _DecodeDataset(inputs, decode),
        batch_size=batch_size,
        shuffle=False,
        num_workers=loader_workers(num_workers, n_batches),
        collate_fn=collate,
        pin_memory=pin_memory,
    )
    yield from loader


def embed_batches(
    inputs: Sequence[Any],
    decode: Callable[[Any], Any],
    embed_batch: Callable[[Any], np.ndarray],
    *,
    dim: int,
    batch_size: int,
    num_workers: int,
    collate: Callable[[list], DecodedBatch] = stack_collate,
    pin_memory: bool = False,
) -> ExtractResult:
    """Decode in workers, embed each decoded batch, and assemble vectors and per-item errors in input order."""
    rows: dict[int, np.ndarray] = {}
    errors: list[ItemError] = []
    for batch in decode_batches(inputs, decode, batch_size=batch_size, num_workers=num_workers, collate=collate,
                                pin_memory=pin_memory):
        errors.extend(batch.errors)
        if batch.payload is not None:
            rows.update(zip(batch.indices, embed_batch(batch.payload)))
    return assemble_result(len(inputs), dim, rows, errors)
