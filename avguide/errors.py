"""Errors a user can cause (bad files, bad arguments).

The CLI prints them as one line and exits with status 2; anything else is a bug and keeps its
traceback. They subclass the builtin exceptions so library callers can catch those too.

The rule: a user's mistake (a missing or corrupt file, a wrong shape, rate or name, NaN in a
file, an unwritable output) raises :class:`BadInputError` / :class:`MissingFileError` with one
line naming the file or argument and what is wrong; files are checked where they are read, by
the loaders of :mod:`avguide.io`. A violated contract between our own functions (an array of the
wrong shape handed from one function to another) is an ``assert``, ``RuntimeError`` or plain
``ValueError``, never one of these, so that a wiring bug shows its traceback.
"""


class AvguideError(Exception):
    """Base of every user-facing error."""


class BadInputError(AvguideError, ValueError):
    """A value, file content or argument is malformed (wrong shape, rate, NaN, unknown name)."""


class MissingFileError(AvguideError, FileNotFoundError):
    """A required file or directory does not exist."""


class TrainingDivergedError(AvguideError, RuntimeError):
    """A loss became NaN/inf; the last good checkpoint is kept."""
