"""The one exception type of the data package."""

from __future__ import annotations


class DataError(ValueError):
    """A problem with the user's data or data config.

    The message is one line that names the config key (or file line) at fault and says how to fix it,
    so the entry point can print it as is instead of a traceback.
    """
