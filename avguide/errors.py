"""Errors a user can cause (bad files, bad arguments).

The CLI prints them as one line and exits non-zero; anything else is a bug and keeps its
traceback. They subclass the builtin exceptions so library callers can catch those too.
"""


class AvguideError(Exception):
    """Base of every user-facing error."""


class BadInputError(AvguideError, ValueError):
    """A value, file content or argument is malformed (wrong shape, rate, NaN, unknown name)."""


class MissingFileError(AvguideError, FileNotFoundError):
    """A required file or directory does not exist."""


class TrainingDivergedError(AvguideError, RuntimeError):
    """A loss became NaN/inf; the last good checkpoint is kept."""
