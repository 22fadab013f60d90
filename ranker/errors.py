"""The ranker package's errors: one base, so a caller can catch everything this package raises on purpose."""


class RankerError(ValueError):
    """Base of every error the ranker package raises on purpose; the message says what to fix."""


class NotFittedError(RankerError, AttributeError):
    """A model, source or ranker used before ``fit`` (or ``load``/``restore``)."""
