"""Named errors of the fusion core; each message names the bad value, the valid options and the fix."""

from __future__ import annotations


class FusionError(ValueError):
    """Base class of every error the fusion core raises on bad input or misuse."""


class AlignmentError(FusionError):
    """Per-modality tables that cannot be joined onto the item list."""


class DuplicateItemError(AlignmentError):
    """An item id that appears twice in the item list or in one modality table."""


class NormalizerError(FusionError):
    """Bad parameters or input for a BlockNormalizer."""


class FusionInputError(FusionError):
    """Blocks, weights, pairs or targets that a fusion method cannot use."""


class UnknownFusionError(FusionError):
    """A fusion method name that is not registered."""


class NotFittedError(FusionError, AttributeError):
    """A fusion object used before fit() (or load())."""
