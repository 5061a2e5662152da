"""The architecture choices a weights file cannot reveal by its tensor names and shapes.

Rotary, sinusoidal and no positions all leave no tensors behind, so a rope model loads a sinusoidal
run's weights without a shape or key error and then computes something else. Files therefore record these
choices (`architecture_of`), and loading compares them with the model (`architecture_mismatch`).
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn

CHOICES = ("norm", "positional", "feedforward", "residual")


def architecture_of(model: nn.Module) -> dict[str, str]:
    """{"norm": class name, "positional": ..., "feedforward": ...} of an EncoderDecoder; {} for other modules."""
    layers = [*getattr(model, "encoder_layers", ()), *getattr(model, "decoder_layers", ())]
    modules = {
        "norm": getattr(layers[0], "attn_norm", None) if layers else None,  # post-norm stacks end with no norm
        "positional": getattr(model, "encoder_positional", None),
        "feedforward": getattr(layers[0], "ffn", None) if layers else None,
        "residual": getattr(model, "residual", None),  # pre- or post-norm: same tensor names, other function
    }
    return {key: type(module).__name__ for key, module in modules.items() if module is not None}


def architecture_from_config(model_config: Mapping | None) -> dict[str, str]:
    """The same names from a saved model config (`_target_` of its norm, positional and feedforward groups)."""
    out: dict[str, str] = {}
    for key in CHOICES:
        group = (model_config or {}).get(key)
        target = group.get("_target_") if isinstance(group, Mapping) else None
        if isinstance(target, str) and target:
            out[key] = target.rsplit(".", 1)[-1]
    return out


def architecture_mismatch(saved: Mapping[str, str], model: nn.Module) -> str | None:
    """'positional=SinusoidalPositions in the file, RotaryEmbedding in the model; ...' or None if they agree
    (choices missing on either side, as in files written before they were recorded, are not compared)."""
    current = architecture_of(model)
    differences = [
        f"{key}={saved[key]} in the file, {current[key]} in the model"
        for key in CHOICES
        if key in saved and key in current and saved[key] != current[key]
    ]
    return "; ".join(differences) or None
