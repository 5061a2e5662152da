"""``run_info.json``: what produced a run (code version, packages, command, machine), for reproducing it."""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from enhanced_tx.runfolder import RunFolder

PACKAGES = (
    "enhanced-tx",
    "torch",
    "transformers",
    "tokenizers",
    "hydra-core",
    "omegaconf",
    "wandb",
    "safetensors",
    "numpy",
)
_PROJECT_ROOT = Path(__file__).resolve().parents[2]  # the checkout holding enhanced_tx/


def collect_run_info(repo_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Git state of ``repo_dir`` (default: this package's checkout), package versions, argv, host, time.

    Never raises for a missing git, a folder outside any repository or a repository without commits:
    those fields are None.
    """
    repo = Path(repo_dir) if repo_dir is not None else _PROJECT_ROOT
    commit = _git(repo, "rev-parse", "HEAD")
    status = _git(repo, "status", "--porcelain") if commit else None
    return {
        "git": {
            "commit": commit,
            "branch": _git(repo, "rev-parse", "--abbrev-ref", "HEAD") if commit else None,
            "dirty": None if status is None else bool(status),
        },
        "packages": {name: _version(name) for name in PACKAGES},
        "python": platform.python_version(),
        "platform": platform.platform(),
        "command": [sys.executable, *sys.argv],
        "cwd": os.getcwd(),
        "hostname": socket.gethostname(),
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "devices": _devices(),
    }


def write_run_info(run_dir: str | os.PathLike, repo_dir: str | os.PathLike | None = None) -> Path:
    """Write ``<run_dir>/run_info.json`` and return its path."""
    path = RunFolder(run_dir).run_info
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(collect_run_info(repo_dir), indent=2, default=str) + "\n", encoding="utf-8")
    return path


def _git(repo: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None  # no git installed, or a hung network filesystem
    return done.stdout.strip() if done.returncode == 0 else None


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _devices() -> dict[str, Any]:
    torch = sys.modules.get("torch")  # only describe devices if torch is already loaded: no import cost
    if torch is None:
        return {}
    cuda = torch.cuda.is_available()
    return {
        "cuda": torch.version.cuda,
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
    }
