"""Errors a user can cause. Entry points print them as one line and exit non-zero."""


class EnhancedTxError(Exception):
    """Base class for errors whose message alone tells the user what is wrong and how to fix it."""


class ConfigError(EnhancedTxError, ValueError):
    """An impossible combination of configuration values (names the keys involved)."""
