"""Weights-only files (`model.safetensors`, or a `.pt` state dict): for sharing and generation."""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from enhanced_tx.checkpoint.atomic import atomic_replace
from enhanced_tx.checkpoint.format import FORMAT, load_checkpoint, safe_torch_load, save_torch_file
from enhanced_tx.checkpoint.lean import is_weights_checkpoint
from enhanced_tx.checkpoint.pointer import follow
from enhanced_tx.errors import CheckpointError
from enhanced_tx.model.architecture import architecture_from_config, architecture_mismatch, architecture_of


def save_model_weights_only(model: nn.Module, path: str | os.PathLike, half_precision: bool = False) -> None:
    """Write the model's weights to ``.safetensors`` (tied weights stored once) or a ``.pt`` state dict.

    ``half_precision`` stores floating-point tensors as fp16; the model itself is not changed.
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import save_model

        # a copy, so the caller's model keeps its dtype; save_model keeps tied weights tied
        target = copy.deepcopy(model).half() if half_precision else model
        metadata = {"format": "pt", "dtype": "float16" if half_precision else "native"}
        metadata.update({f"architecture.{k}": v for k, v in architecture_of(model).items()})
        atomic_replace(path, lambda tmp: save_model(target, str(tmp), metadata=metadata))
    elif path.suffix == ".pt":
        state = _portable_state_dict(model, half_precision)
        atomic_replace(path, lambda tmp: save_torch_file(state, tmp))
    else:
        raise CheckpointError(f"weights file {path} must end in .safetensors or .pt")


def _portable_state_dict(model: nn.Module, half_precision: bool) -> dict[str, torch.Tensor]:
    """Contiguous copies (not views of larger storages); tied entries share one copy so it is stored once."""
    out: dict[str, torch.Tensor] = {}
    copies: dict[tuple, torch.Tensor] = {}
    for name, tensor in model.state_dict().items():
        key = (tensor.data_ptr(), tuple(tensor.shape), tuple(tensor.stride()), tensor.dtype)
        if key not in copies:
            t = tensor.detach()
            if half_precision and t.is_floating_point():
                t = t.to(torch.float16)
            copies[key] = t.contiguous().clone().cpu()
        out[name] = copies[key]
    return out


def load_model_weights(model: nn.Module, path: str | os.PathLike, strict: bool = True) -> nn.Module:
    """Load ``.safetensors``, a weights-only ``.pt`` or a full checkpoint's ``"model"`` into ``model``.

    Values are cast to the model's dtypes and devices. A file from another architecture raises a
    CheckpointError that names the first mismatching parameter.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file {path} does not exist; check the path")
    expected = model.state_dict()
    if path.suffix == ".safetensors":
        from safetensors import safe_open
        from safetensors.torch import load_model

        try:
            with safe_open(str(path), framework="pt") as f:
                shapes = {k: list(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
                metadata = f.metadata() or {}
        except Exception as e:
            raise CheckpointError(f"weights file {path} is not a readable safetensors file ({e})") from None
        prefix = "architecture."
        check_architecture(path, {k[len(prefix) :]: v for k, v in metadata.items() if k.startswith(prefix)}, model)
        check_shapes(path, shapes, expected)
        try:
            load_model(model, str(path), strict=strict)
        except RuntimeError as e:
            raise CheckpointError(_key_error(path, str(e))) from None
        return model

    state = _weights_from_pt(path, model)
    check_shapes(path, {k: list(v.shape) for k, v in state.items()}, expected)
    state = _fill_tied(state, expected)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if strict and (missing or unexpected):
        raise CheckpointError(_key_error(path, f"missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]}"))
    return model


def check_architecture(path: str | os.PathLike, saved: Mapping[str, str], model: nn.Module) -> None:
    """One-line error when a file records other norm / positional / feedforward choices than `model` has."""
    mismatch = architecture_mismatch(saved, model)
    if mismatch:
        raise CheckpointError(
            f"weights in {path} are from another architecture ({mismatch}); load them into a model built "
            "from their run's config (run_generate.py run=<that run>), or set norm/positional/feedforward to match"
        )


def _weights_from_pt(path: Path, model: nn.Module) -> Mapping[str, torch.Tensor]:
    # a weights-only checkpoint (checkpoint.lean) is read and checked like a full one below
    obj = {"format": FORMAT} if is_weights_checkpoint(follow(path)) else safe_torch_load(path, map_location="cpu")
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        state = load_checkpoint(path)
        config = state.get("config")
        check_architecture(
            path, architecture_from_config(config.get("model") if isinstance(config, Mapping) else None), model
        )
        obj = state.get("model")
    elif isinstance(obj, dict) and isinstance(obj.get("model"), Mapping):
        obj = obj["model"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(
            f"{path} holds no model weights (expected a state dict or a checkpoint with a 'model' key)"
        )
    return obj


def check_shapes(
    path: str | os.PathLike, shapes: Mapping[str, list[int]], expected: Mapping[str, torch.Tensor]
) -> None:
    """One-line CheckpointError naming the first tensor whose shape in the file differs from the model's."""
    for name, shape in shapes.items():
        if name in expected and list(expected[name].shape) != list(shape):
            raise CheckpointError(
                f"checkpoint {path} is from another architecture: {name} has shape {list(shape)} in the file "
                f"and {list(expected[name].shape)} in the model; pass the run's own config"
            )


def _fill_tied(state: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor]) -> dict:
    """Supply a tied parameter that a file stored once under its twin's name."""
    state = dict(state)
    by_storage: dict[tuple, list[str]] = {}
    for name, t in expected.items():
        by_storage.setdefault((t.data_ptr(), tuple(t.shape)), []).append(name)
    for names in by_storage.values():
        present = [n for n in names if n in state]
        for name in names:
            if name not in state and present:
                state[name] = state[present[0]]
    return state


def _key_error(path: Path, detail: str) -> str:
    first = " ".join(detail.split())[:300]
    return (
        f"weights in {path} do not match the model ({first}); pass the run's own config, "
        "or strict=False to load a partial match"
    )
