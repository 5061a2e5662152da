"""Sharded checkpoints of FSDP runs, through torch.distributed.checkpoint (DCP).

In a run's `checkpoints/`:

    dcp/step_N/                  model and optimizer state: one `__R_0.distcp` file per rank + `.metadata`
    step_N.pt  last.pt  best.pt  the usual checksummed files (`enhanced_tx.checkpoint`) with everything else
                                 (train state, RNG, budget, config, W&B id) and `"dcp": "dcp/step_N"` in place
                                 of the `model` and `optimizer` tensors

So `trainer.resume=auto|last|best|PATH` works as for any run, and the shards load at another world size,
or in a single process (DCP reshards on load). `python -m enhanced_tx.training.convert RUN_DIR` turns one
into a weights-only `.safetensors` file.

Security: DCP keeps its index (`.metadata`) as a pickle; it is read with `dcp_metadata.SafeFileSystemReader`,
which admits only the names an index holds, so a crafted folder runs no code. Share models as `.safetensors`.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import warnings
from pathlib import Path

import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    get_model_state_dict,
    get_state_dict,
    set_model_state_dict,
    set_state_dict,
)

from enhanced_tx.checkpoint.dcp_metadata import SafeFileSystemReader
from enhanced_tx.checkpoint.format import load_checkpoint
from enhanced_tx.checkpoint.manager import CheckpointManager
from enhanced_tx.errors import CheckpointError

DCP_FOLDER = "dcp"
_STEP_FOLDER = re.compile(r"^step_(\d+)$")


def is_sharded(state: dict) -> bool:
    """Whether a checkpoint's state keeps its weights in a DCP folder."""
    return isinstance(state.get("dcp"), str)


def save(directory: str | os.PathLike, step: int, model: nn.Module, optimizer) -> str:
    """Every rank writes its shard of model and optimizer; returns the folder's name relative to `directory`."""
    name = f"{DCP_FOLDER}/step_{step}"
    model_state, optimizer_state = get_state_dict(model, optimizer)
    dcp.save({"model": model_state, "optimizer": optimizer_state}, checkpoint_id=Path(directory) / name)
    return name


def reference(state: dict, name: str) -> dict:
    """The `.pt` state of a sharded checkpoint: `state` without its tensors, pointing at the DCP folder."""
    state = {k: v for k, v in state.items() if k not in ("model", "optimizer")}
    state["dcp"] = name
    return state


def folder(state: dict, path: str | os.PathLike) -> Path:
    """The DCP folder a `.pt` file at `path` refers to (next to it).

    DCP reads its `.metadata` with pickle, so only the folder name `save` writes is accepted: a crafted `.pt`
    (itself safe to load) cannot point the load at a pickle elsewhere on disk.
    """
    name = state["dcp"]
    if not re.fullmatch(rf"{DCP_FOLDER}/step_\d+", name):
        raise CheckpointError(
            f"checkpoint {path} points its weights at {name!r}, not at a {DCP_FOLDER}/step_N folder next to it; "
            "refusing to follow it (use a checkpoint written by enhanced-tx, or its model.safetensors)"
        )
    found = Path(path).parent / name
    if not (found / ".metadata").is_file():
        raise CheckpointError(
            f"checkpoint {path} keeps its weights in {found}, which is missing or incomplete; "
            "resume from another checkpoint (trainer.resume=auto picks the newest good one)"
        )
    return found


def load(state: dict, path: str | os.PathLike, model: nn.Module, optimizer=None) -> None:
    """Load the shards into `model` (and `optimizer`): sharded or plain, at any world size, in one process too."""
    source = folder(state, path)
    if optimizer is None:
        model_state = get_model_state_dict(model)
        target = {"model": model_state}
    else:
        model_state, optimizer_state = get_state_dict(model, optimizer)
        target = {"model": model_state, "optimizer": optimizer_state}
    with warnings.catch_warnings():  # "torch.distributed is ... uninitialized, assuming ... a single process"
        warnings.filterwarnings("ignore", message=".*assuming the intent is to load in a single process.*")
        dcp.load(target, storage_reader=SafeFileSystemReader(source))  # its index unpickled safely
    if optimizer is None:
        set_model_state_dict(model, model_state)
    else:
        set_state_dict(model, optimizer, model_state_dict=model_state, optim_state_dict=optimizer_state)


def load_model(path: str | os.PathLike, model: nn.Module) -> nn.Module:
    """The model weights of any full checkpoint, sharded or not, into a plain `model` (one process)."""
    state = load_checkpoint(path)
    if is_sharded(state):
        load(state, path, model)
    else:
        model.load_state_dict(state["model"])
    return model


def prune(manager: CheckpointManager) -> None:
    """Delete DCP folders that no remaining `.pt` file (step files, last, best) refers to."""
    root = manager.directory / DCP_FOLDER
    if not root.is_dir():
        return
    referenced = set()
    for path in [manager.last, manager.best, *(p for _, p in manager.step_files())]:
        if path.is_file():
            with contextlib.suppress(CheckpointError):
                referenced.add(load_checkpoint(path).get("dcp"))
    for candidate in root.iterdir():
        if _STEP_FOLDER.match(candidate.name) and f"{DCP_FOLDER}/{candidate.name}" not in referenced:
            shutil.rmtree(candidate, ignore_errors=True)


def optimizer_state_by_name(native: dict, model: nn.Module, optimizer) -> dict:
    """A `torch.optim` state dict (parameters numbered in param-group order) keyed by parameter names,
    as `set_optimizer_state_dict` wants; `optimizer` is the same kind, built the same way on `model`."""
    names = {id(p): name for name, p in model.named_parameters()}
    params = [p for group in optimizer.param_groups for p in group["params"]]
    numbers = [i for group in native["param_groups"] for i in group["params"]]
    if len(numbers) != len(params):
        raise CheckpointError(
            f"the checkpoint's optimizer has {len(numbers)} parameters, this model's {len(params)}; "
            "resume with the run's own config"
        )
    name_of = {i: names[id(p)] for i, p in zip(numbers, params, strict=True)}
    return {
        "state": {name_of[i]: value for i, value in native["state"].items()},
        "param_groups": [{**g, "params": [name_of[i] for i in g["params"]]} for g in native["param_groups"]],
    }
