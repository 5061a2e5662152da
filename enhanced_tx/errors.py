"""Errors a user can cause. Entry points print them as one line and exit non-zero."""


class EnhancedTxError(Exception):
    """Base class for errors whose message alone tells the user what is wrong and how to fix it."""


class ConfigError(EnhancedTxError, ValueError):
    """An impossible combination of configuration values (names the keys involved)."""


class CheckpointError(EnhancedTxError, RuntimeError):
    """A checkpoint cannot be written or read; the message says what is wrong and how to fix it."""


def one_line(error: BaseException) -> str:
    """The error as the one line an entry point prints: our own errors as they are, others with their type."""
    error = unwrap(error)
    message = " ".join(str(error).split()) or type(error).__name__
    return f"{type(error).__name__}: {message}" if not isinstance(error, EnhancedTxError) else message


def unwrap(error: BaseException) -> BaseException:
    """The error a user caused, not Hydra's "Error in call to target ..." wrapper around it."""
    try:
        from hydra.errors import InstantiationException
    except ImportError:
        return error
    while isinstance(error, InstantiationException) and isinstance(error.__cause__, Exception):
        error = error.__cause__
    return error
