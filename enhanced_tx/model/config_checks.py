"""The model config's one-line errors, raised before any weight is allocated."""

from __future__ import annotations

from enhanced_tx.errors import ConfigError
from enhanced_tx.model.linear import LINEAR_BACKENDS


def check_flag(key: str, value: object, auto: bool | None = None) -> bool:
    """`value` as a bool, or `auto`'s value for "auto" where the key takes it; else a one-line ConfigError."""
    if auto is not None and value == "auto":
        return auto
    if not isinstance(value, bool):
        raise ConfigError(f"{key}={value!r} must be true, false{'' if auto is None else ' or auto'}")
    return value


def check_linear_backend(backend: str) -> None:
    if backend not in LINEAR_BACKENDS:
        raise ConfigError(f"model.linear_backend={backend!r} must be one of {', '.join(LINEAR_BACKENDS)}")


def check_config(
    vocab_size: int,
    d_model: int,
    n_heads: int,
    n_encoder_layers: int,
    n_decoder_layers: int,
    max_seq_len: int,
    dropout: float,
) -> None:
    problems = []
    if vocab_size <= 0:
        problems.append(f"vocab_size={vocab_size} must be positive (it comes from the tokenizer)")
    if n_heads <= 0 or d_model <= 0 or d_model % n_heads:
        problems.append(f"model.d_model={d_model} must be a positive multiple of model.n_heads={n_heads}")
    if n_encoder_layers < 1 or n_decoder_layers < 1:
        problems.append(
            f"model.n_encoder_layers={n_encoder_layers} and model.n_decoder_layers={n_decoder_layers} must be >= 1"
        )
    if max_seq_len < 1:
        problems.append(f"model.max_seq_len={max_seq_len} must be >= 1")
    if not 0.0 <= dropout < 1.0:
        problems.append(f"model.dropout={dropout} must be in [0, 1)")
    if problems:
        raise ConfigError("; ".join(problems))
