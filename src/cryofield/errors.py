"""Exceptions that describe bad input in words a user can act on.

The command line turns :class:`InputError` into one line on stderr and exit code 2, and
:class:`RunStopped` (a run that cannot go on, e.g. a loss that is no longer finite) into one
line and exit code 1; :class:`RunInterrupted` (stopped by a signal, checkpoint written) into
one line and 128 + the signal (130 for SIGINT, 143 for SIGTERM).
"""

from __future__ import annotations

import os


class InputError(ValueError):
    """An input file (or a value in it) that cryofield cannot use.

    Parameters
    ----------
    path : str or PathLike or None
        The file at fault; it starts the message.
    message : str
        What is wrong, in one line, naming the row where there is one.
    """

    def __init__(self, path: str | os.PathLike | None, message: str):
        self.path = None if path is None else os.fspath(path)
        super().__init__(f"{self.path}: {message}" if self.path else message)


class RunStopped(RuntimeError):
    """A run that stopped itself: what happened, where, and what is left to continue from."""


class RunInterrupted(RunStopped):
    """A run stopped by a signal (SIGINT, SIGTERM) after a checkpoint; ``exit_code`` is 128 + the signal."""

    def __init__(self, signum: int, message: str):
        self.exit_code = 128 + int(signum)
        super().__init__(message)
