"""The pipelines package's errors: one base the CLI catches, so an expected failure is a message, not a traceback."""


class PipelineError(Exception):
    """Base of every error the pipelines package raises on purpose; the message names the fix."""
