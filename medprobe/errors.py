"""The error type users see: bad input, missing data, a bad option, a corrupt or foreign file.

The CLIs print a `UserError` as one line with its fix and exit 1; any other exception is a bug
and keeps its traceback. Subclasses also derive from the builtin a caller would expect
(`ValueError` for bad values), so library users can catch either.
"""

from __future__ import annotations


class UserError(Exception):
    """Something the user can fix; the message names the file, option or row and the fix."""


class DataError(UserError, ValueError):
    """A dataset file that is not what medprobe needs: layout, images or labels."""


class WeightsError(UserError, ValueError):
    """A weights file that cannot be read, or that does not fit the backbone it is given for."""


def did_you_mean(name: str, choices) -> str:
    """`did you mean 'breastmnist'? ` for the closest of `choices`, or "" when none is close."""
    import difflib

    by_lower = {str(c).lower(): str(c) for c in choices}
    close = difflib.get_close_matches(str(name).lower(), by_lower, n=1, cutoff=0.6)
    return f"did you mean {by_lower[close[0]]!r}? " if close else ""
