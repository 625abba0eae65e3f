"""The base class of errors a user can fix (kept import-light: the data and checkpoint modules use it)."""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix: a missing or unusable file, a bad option, an output that exists.

    Command-line tools print it as one line (``prog: error: message``) and exit with status 2,
    never with a traceback (see :func:`rad_env.cli.run_cli`). ``hint`` is an optional next step.
    """

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint
