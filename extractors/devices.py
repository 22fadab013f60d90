"""Device choice, mixed precision, host-to-device copies and OOM back-off.

The same code runs on CPU and CUDA: on CUDA it adds bf16 (or fp16) autocast,
pinned memory, non-blocking copies and channels_last for CNNs. Thread counts
(torch.set_num_threads) are the caller's business and are never set here.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import torch

from extractors.base import ExtractorConfigError

logger = logging.getLogger(__name__)

T = TypeVar("T")


def resolve_device(device: str) -> torch.device:
    """'auto' -> CUDA when available else CPU; 'cpu', 'cuda', 'cuda:N' as given."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ExtractorConfigError(f"device={device!r} is not a torch device; use 'auto', 'cpu' or 'cuda[:N]'") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ExtractorConfigError(f"device={device!r} asks for CUDA but none is available; use 'auto' or 'cpu'")
    if resolved.type not in ("cpu", "cuda"):
        raise ExtractorConfigError(f"device={device!r} is not supported; use 'auto', 'cpu' or 'cuda[:N]'")
    return resolved


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA (fp16 where bf16 is unsupported); full precision on CPU or precision='fp32'."""
    if device.type != "cuda" or precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast(device_type="cuda", dtype=dtype)


def prepare_model(model: torch.nn.Module, device: torch.device, *, channels_last: bool = False) -> torch.nn.Module:
    """Frozen inference setup: eval mode, no grads, on device (channels_last for CNNs on CUDA)."""
    model.eval()
    model.requires_grad_(False)
    model.to(device)
    if channels_last and device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    return model


def to_device(tensor: torch.Tensor, device: torch.device, *, channels_last: bool = False) -> torch.Tensor:
    """Non-blocking copy (effective from pinned host memory)."""
    if device.type != "cuda":
        return tensor
    tensor = tensor.to(device, non_blocking=True)
    if channels_last and tensor.dim() == 4:
        tensor = tensor.contiguous(memory_format=torch.channels_last)
    return tensor


def pin_memory(device: torch.device) -> bool:
    return device.type == "cuda"


class OOMBackoff:
    """Runs a batched function, halving the batch size on CUDA out-of-memory.

    The reduced size persists for later calls on the same instance, so one
    OOM costs one retry rather than one per batch. A batch of one that still
    runs out of memory re-raises: nothing smaller can be tried.
    """

    def __init__(self, batch_size: int):
        if batch_size < 1:
            raise ExtractorConfigError(f"batch_size={batch_size!r} must be >= 1")
        self.batch_size = batch_size

    def run(self, fn: Callable[[Sequence[Any]], T], items: Sequence[Any]) -> list[T]:
        """Apply ``fn`` to consecutive chunks of ``items``; returns the chunk outputs in order."""
        outputs: list[T] = []
        start = 0
        while start < len(items):
            chunk = items[start : start + self.batch_size]
            try:
                outputs.append(fn(chunk))
            except torch.cuda.OutOfMemoryError:
                if self.batch_size == 1:
                    raise
                self.batch_size = max(1, self.batch_size // 2)
                logger.warning("CUDA out of memory; retrying with batch_size=%d", self.batch_size)
                _free_cuda_cache()
                continue
            start += len(chunk)
        return outputs


def _free_cuda_cache() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
