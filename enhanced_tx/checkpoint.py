"""Checkpoints: atomic, checksummed, and loadable with ``torch.load(weights_only=True)`` only.

A full checkpoint file is an outer dict that ``torch.load(weights_only=True)`` reads directly::

    {"format": "enhanced-tx/checkpoint", "version": 1, "step": N | None,
     "sha256": hex digest of the payload, "payload": uint8 tensor (the state, serialised by torch.save)}

The digest covers every byte of the state, so truncation and bit flips are reported instead of resuming
from silently wrong weights. The state itself may hold only tensors and plain containers, and it is
loaded with ``weights_only=True`` too: a checkpoint is never a way to run code.

Weights-only files (``model.safetensors`` or a ``.pt`` state dict) are for sharing and generation.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import hashlib
import io
import os
import pickle
import random
import re
import secrets
import shutil
import warnings
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from enhanced_tx.errors import EnhancedTxError
from enhanced_tx.model.architecture import architecture_from_config, architecture_mismatch, architecture_of

FORMAT = "enhanced-tx/checkpoint"
VERSION = 1

_SCALARS = (str, int, float, bool, type(None), torch.dtype, torch.device, torch.Size)
_STEP_FILE = re.compile(r"^step_(\d+)\.pt$")


class CheckpointError(EnhancedTxError, RuntimeError):
    """A checkpoint cannot be written or read; the message says what is wrong and how to fix it."""


# --------------------------------------------------------------------------------------------------
# Full checkpoints
# --------------------------------------------------------------------------------------------------


def save_checkpoint(state: dict, path: str | os.PathLike, *, step: int | None = None) -> None:
    """Atomically write ``state`` to ``path``; ``step`` (default ``state["step"]``) goes in the metadata."""
    outer = _wrap(state, step)
    _atomic_replace(Path(path), lambda tmp: _save_to(outer, tmp))


def _wrap(state: dict, step: int | None) -> dict:
    """The outer dict of a checkpoint file: metadata plus the serialised state as a uint8 tensor."""
    if not isinstance(state, dict):
        raise CheckpointError(f"a checkpoint state must be a dict, got {type(state).__name__}")
    _check_plain(state, "state")
    if step is None and isinstance(state.get("step"), int) and not isinstance(state.get("step"), bool):
        step = state["step"]
    buffer = io.BytesIO()
    torch.save(state, buffer)
    view = buffer.getbuffer()  # no copy: a large model's state is held once, not three times
    return {
        "format": FORMAT,
        "version": VERSION,
        "step": step,
        "sha256": hashlib.sha256(view).hexdigest(),
        "payload": torch.frombuffer(view, dtype=torch.uint8),
    }


def _save_to(obj: Any, path: Path) -> None:
    with open(path, "wb") as f:
        torch.save(obj, f)


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict:
    """Load and verify a checkpoint written by :func:`save_checkpoint` (never unpickles code)."""
    return _read_verified(Path(path), map_location)[1]


def read_checkpoint_step(path: str | os.PathLike) -> int | None:
    """The step stored in a checkpoint's metadata, after verifying its checksum."""
    return _read_verified(Path(path), "cpu")[0]


def _read_verified(path: Path, map_location: Any) -> tuple[int | None, dict]:
    outer = _safe_torch_load(path, map_location="cpu")
    if not isinstance(outer, dict) or outer.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not an enhanced-tx checkpoint (no format marker); "
            "for a weights-only file (.safetensors or a state dict) use load_model_weights"
        )
    version = outer.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {version!r}, this enhanced-tx reads up to {VERSION}; "
            "upgrade enhanced-tx"
        )
    payload = outer.get("payload")
    if not isinstance(payload, torch.Tensor) or payload.dtype != torch.uint8:
        raise CheckpointError(f"checkpoint {path} is corrupt (no payload); use another checkpoint")
    if hashlib.sha256(payload.numpy()).hexdigest() != outer.get("sha256"):
        raise CheckpointError(
            f"checkpoint {path} is corrupt (checksum mismatch: truncated or damaged on disk); "
            "resume from another one (trainer.resume=auto picks the newest good one)"
        )
    data = io.BytesIO(payload.numpy())
    step = outer.get("step")
    del outer, payload  # keep one copy of the serialised state in memory, not two
    state = _safe_torch_load(data, map_location=map_location, name=str(path))
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} is corrupt (state is not a dict); use another checkpoint")
    return (step if isinstance(step, int) else None), state


def _safe_torch_load(source: Path | io.BytesIO, map_location: Any, name: str | None = None) -> Any:
    """``torch.load(weights_only=True)`` with every failure turned into one clear CheckpointError."""
    name = name or str(source)
    if isinstance(source, Path) and not source.is_file():
        raise CheckpointError(
            f"checkpoint {name} does not exist; check the path, or pass checkpoint=last|best "
            "for a run folder that has checkpoints/"
        )
    try:
        return torch.load(source, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        if "Weights only load failed" in str(e):
            found = re.search(r"GLOBAL (\S+)", str(e))
            what = f" ({found.group(1)})" if found else ""
            # never retry with weights_only=False: that is exactly how a malicious file runs its code
            raise CheckpointError(
                f"refused to load {name}: it contains pickled Python objects that could run code{what}; "
                "only load checkpoints you trust, and share models as .safetensors"
            ) from None
        raise CheckpointError(f"checkpoint {name} is corrupt ({e}); use another checkpoint") from None
    except OSError as e:
        if e.errno == errno.EINVAL:  # torch's zip reader on a cut-off file: not a file-system problem
            raise CheckpointError(f"checkpoint {name} is corrupt or truncated; use another checkpoint") from None
        raise CheckpointError(f"cannot read checkpoint {name}: {e.strerror or e}") from None
    except Exception as e:  # torch reports truncation as RuntimeError, EOFError, KeyError, ...
        detail = str(e).split(". ")[0].strip() or type(e).__name__
        raise CheckpointError(f"checkpoint {name} is corrupt or truncated ({detail}); use another checkpoint") from None


def _check_plain(value: Any, where: str) -> None:
    """Reject what a weights_only load would refuse, naming where it sits (cheaper to fix at save time)."""
    if isinstance(value, (torch.Tensor, *_SCALARS)):
        return
    if type(value) in (dict, OrderedDict):
        for key, item in value.items():
            if not isinstance(key, str | int | float | bool | type(None)):
                raise CheckpointError(f"{where} has a key of type {type(key).__name__}; use str or int keys")
            _check_plain(item, f"{where}[{key!r}]")
        return
    if type(value) in (list, tuple):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
        return
    hint = " (OmegaConf.to_container(cfg, resolve=True))" if "omegaconf" in type(value).__module__ else ""
    raise CheckpointError(
        f"{where} is a {type(value).__module__}.{type(value).__qualname__}, which a weights_only load "
        f"refuses; store tensors and plain dict/list/str/int/float/bool/None only{hint}"
    )


# --------------------------------------------------------------------------------------------------
# Atomic writes
# --------------------------------------------------------------------------------------------------


def _atomic_copy(source: Path, path: Path) -> None:
    _atomic_replace(path, lambda tmp: shutil.copyfile(source, tmp))


def _atomic_replace(path: Path, write: Callable[[Path], None]) -> None:
    """Let ``write`` fill a temp file next to ``path``, then swap it in; on failure ``path`` is untouched."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # same folder, so os.replace is a rename on one filesystem; made here (not mkstemp) to keep the umask
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        write(tmp)
        _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        cause = _os_error_in(e)
        if cause is not None:
            raise CheckpointError(_write_error(path, cause)) from e
        raise
    _fsync_dir(path.parent)


def _os_error_in(error: BaseException) -> OSError | None:
    """The I/O error behind ``error``: torch.save re-raises a failed write as a RuntimeError from its
    cleanup (the OSError is its context), and safetensors reports one as text."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, OSError):
            return seen
        if "No space left on device" in str(seen) or "os error 28" in str(seen):
            return OSError(errno.ENOSPC, "No space left on device")
        seen = seen.__cause__ or seen.__context__
    return None


def _write_error(path: Path, e: OSError) -> str:
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return (
            f"disk full while writing {path} ({e.strerror or e}); free space or point paths.output_dir "
            "at a larger disk (the previous file there is intact)"
        )
    return f"could not write {path} ({e.strerror or e}); check the folder is writable (previous file intact)"


def _fsync_file(path: Path) -> None:
    # data on disk before the rename makes it visible: a crash never leaves a half-written last.pt
    with open(path, "rb+") as f:
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(directory: Path) -> None:
    # makes the rename itself durable; directories cannot be opened like this on Windows
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --------------------------------------------------------------------------------------------------
# A folder of checkpoints
# --------------------------------------------------------------------------------------------------


class CheckpointManager:
    """``step_N.pt`` (newest ``keep_last`` kept), ``last.pt`` and ``best.pt`` in one folder."""

    def __init__(self, directory: str | os.PathLike, keep_last: int | None = 3) -> None:
        if keep_last is not None and keep_last < 1:
            raise CheckpointError(f"keep_last must be >= 1 or null (keep all), got {keep_last}")
        self.directory = Path(directory)
        self.keep_last = keep_last

    @property
    def last(self) -> Path:
        return self.directory / "last.pt"

    @property
    def best(self) -> Path:
        return self.directory / "best.pt"

    def step_path(self, step: int) -> Path:
        return self.directory / f"step_{step}.pt"

    def save(self, state: dict, step: int, is_best: bool = False) -> Path:
        """Write ``step_{step}.pt``, then ``last.pt`` (and ``best.pt``); prune old step files."""
        path = self.step_path(step)
        save_checkpoint(state, path, step=step)
        # copies of the verified-by-checksum step file, each swapped in atomically
        _atomic_copy(path, self.last)
        if is_best:
            _atomic_copy(path, self.best)
        self._prune()
        return path

    def step_files(self) -> list[tuple[int, Path]]:
        """``(step, path)`` of the step files, newest first (by the step in the name)."""
        if not self.directory.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.directory.iterdir() if (m := _STEP_FILE.match(p.name))]
        return sorted(found, reverse=True)

    def latest_good(self) -> Path | None:
        """The newest checkpoint that loads and verifies (by stored step); corrupt ones are skipped."""
        found = self.latest_good_with_state()
        return found[0] if found else None

    def latest_good_with_state(self) -> tuple[Path, dict] | None:
        """`latest_good` and the state it verified, for a caller that would otherwise read the file again."""
        best: tuple[int, Path, dict] | None = None
        candidates = [(None, self.last)] if self.last.is_file() else []
        for name_step, path in candidates + list(self.step_files()):
            if best is not None and name_step is not None and name_step <= best[0]:
                break  # step files are newest first: none further down can beat what we have
            try:
                step, state = _read_verified(path, "cpu")
            except CheckpointError as e:
                warnings.warn(f"skipping {path}: {e}", stacklevel=3)
                continue
            step = step if step is not None else (name_step if name_step is not None else -1)
            if best is None or step > best[0]:
                best = (step, path, state)
        return (best[1], best[2]) if best else None

    def resolve(self, spec: str | os.PathLike | None) -> Path | None:
        """``"auto"``: newest good checkpoint or None (start fresh); ``"last"``/``"best"``/a path: that file.

        A path may also be a folder (a run or its checkpoints/): its newest good checkpoint.
        """
        if spec is None or (isinstance(spec, str) and spec.lower() in ("none", "null", "never", "")):
            return None
        if spec == "auto":
            return self.latest_good()
        if spec in ("last", "best"):
            path = self.last if spec == "last" else self.best
            if not path.is_file():
                raise CheckpointError(
                    f"checkpoint {path} does not exist; use checkpoint=auto for the newest good one, "
                    "or pass a file path"
                )
            return path
        path = Path(spec).expanduser()
        if path.is_dir():
            folder = path / "checkpoints" if (path / "checkpoints").is_dir() else path
            found = CheckpointManager(folder).latest_good()
            if found is None:
                raise CheckpointError(f"no usable checkpoint in {folder}; pass a checkpoint file instead")
            return found
        if not path.is_file():
            raise CheckpointError(f"checkpoint {path} does not exist; pass auto, last, best or an existing file")
        return path

    def _prune(self) -> None:
        if self.keep_last is None:
            return
        for _, path in self.step_files()[self.keep_last :]:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


# --------------------------------------------------------------------------------------------------
# Weights only
# --------------------------------------------------------------------------------------------------


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
        _atomic_replace(path, lambda tmp: save_model(target, str(tmp), metadata=metadata))
    elif path.suffix == ".pt":
        state = _portable_state_dict(model, half_precision)
        _atomic_replace(path, lambda tmp: _save_to(state, tmp))
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
    obj = _safe_torch_load(path, map_location="cpu")
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


# --------------------------------------------------------------------------------------------------
# Random number generators
# --------------------------------------------------------------------------------------------------


def capture_rng_state() -> dict:
    """Python, NumPy, torch CPU and (if present) all CUDA generators, as tensors and plain values."""
    version, mt_state, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": {"version": version, "state": torch.tensor(mt_state, dtype=torch.int64), "gauss": gauss},
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = [s.cpu() for s in torch.cuda.get_rng_state_all()]
    return state


def restore_rng_state(state: Mapping) -> None:
    """Undo :func:`capture_rng_state`; CUDA generators are restored for the devices both sides have."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(x) for x in py["state"].tolist()), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state(
        (npy["kind"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"], npy["cached_gaussian"])
    )
    torch.set_rng_state(state["torch"].cpu())
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available():
        count = min(len(cuda), torch.cuda.device_count())
        if count != len(cuda):
            warnings.warn(
                f"checkpoint has CUDA RNG states for {len(cuda)} devices, this machine has "
                f"{torch.cuda.device_count()}; restored the first {count}",
                stacklevel=2,
            )
        for i in range(count):
            torch.cuda.set_rng_state(cuda[i].cpu(), device=i)
