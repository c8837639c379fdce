"""The one base class of errors in what a user gave: a file, a flag, a value, a folder.

Every such error in spikeforge (a bad config, an unknown name, a corrupt checkpoint or event file, a
dataset folder laid out wrongly, a run folder in use) derives from ``UserError`` and carries a one-line
message naming the thing that is wrong and what is expected. The command line prints that line and exits
with code 2; nothing else needs to know the individual classes.
"""

from __future__ import annotations

__all__ = ["UserError", "first_line"]


class UserError(Exception):
    """Something the user gave is wrong; ``str(e)`` is one line naming it and what is expected."""


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (its type's name if it has none), for wrapping a lower-level
    error (torch's, a factory's) into a one-line one."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
