"""The one base class of errors in what a user gave: a file, a flag, a value, a folder.

Every such error in spikeforge (a bad config, an unknown name, a corrupt checkpoint or event file, a
dataset folder laid out wrongly, a run folder in use) derives from ``UserError`` and carries a one-line
message naming the thing that is wrong and what is expected. The command line prints that line and exits
with code 2; nothing else needs to know the individual classes.
"""

from __future__ import annotations

__all__ = ["UserError"]


class UserError(Exception):
    """Something the user gave is wrong; ``str(e)`` is one line naming it and what is expected."""
