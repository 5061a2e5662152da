"""Command-line plumbing that must happen before `@hydra.main` (no torch import: entry points start fast).

- Group aliases: `trainer.strategy=ddp` (the dotted key, as users write it) selects the option
  `conf/trainer/strategy/ddp.yaml`, i.e. the group override `trainer/strategy=ddp`. Keys below it
  (`trainer.strategy.backend=gloo`) are ordinary value overrides and stay as they are.
- torchrun: every rank composes its own config, so the run folder must not depend on the clock. Under
  torchrun all ranks share `outputs/torchrun/<run id>` (`multirun/torchrun/<run id>` for sweeps), where the
  run id is TORCHELASTIC_RUN_ID: torchrun's rendezvous id, the same on every node. Ranks other than 0 write
  no `.hydra/` folder and no log file (`hydra.output_subdir=null`, `hydra/job_logging=stdout`).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping, Sequence

NESTED_GROUPS = ("trainer/strategy",)
NO_RUN_ID = ("", "none")  # torchrun's default --rdzv-id when the rendezvous is static (multi-node, no id)
_OPTION_NAMES = re.compile(r"[A-Za-z0-9_-]+(,[A-Za-z0-9_-]+)*")


def translate_group_aliases(argv: list[str], groups: Sequence[str] = NESTED_GROUPS) -> list[str]:
    """Rewrite `trainer.strategy=ddp[,fsdp]` into `trainer/strategy=ddp[,fsdp]` in place (a value made of
    option names; `check_group_options` then reports a misspelt one)."""
    for i, arg in enumerate(argv[1:], start=1):
        key, sep, value = arg.partition("=")
        if sep and _OPTION_NAMES.fullmatch(value) and key in {g.replace("/", ".") for g in groups}:
            argv[i] = f"{key.replace('.', '/')}={value}"
    return argv


def _has_override(argv: Sequence[str], key: str) -> bool:
    return any(a.lstrip("+~").startswith(f"{key}=") for a in argv[1:])


def torchrun_overrides(argv: Sequence[str], env: Mapping[str, str]) -> list[str]:
    """Overrides to append when this process is one rank of a torchrun job (none otherwise).

    Raises SystemExit with one line when the run folder cannot be shared: launched without a rendezvous
    id (`--standalone` on one node, `--rdzv-id` across nodes) and without an explicit `hydra.run.dir`.
    """
    under_launcher = "TORCHELASTIC_RUN_ID" in env or int(env.get("WORLD_SIZE", "1")) > 1
    if not under_launcher:
        return []
    multirun = any(a in ("-m", "--multirun") for a in argv[1:])
    folders = {"hydra.run.dir": "outputs/torchrun"}
    if multirun:
        folders["hydra.sweep.dir"] = "multirun/torchrun"
    missing = {key: root for key, root in folders.items() if not _has_override(argv, key)}
    run_id = env.get("TORCHELASTIC_RUN_ID", "")
    if missing and run_id in NO_RUN_ID:
        raise SystemExit(
            "error: under torchrun all ranks share one run folder named by the rendezvous id; launch with "
            "`torchrun --standalone ...` (one node) or `--rdzv-id=JOB_ID` (several nodes), or pass "
            "hydra.run.dir=FOLDER"
        )
    overrides = [f"{key}={root}/{run_id}" for key, root in missing.items()]
    if int(env.get("RANK", "0")) != 0:
        overrides.append("hydra.output_subdir=null")
        if not _has_override(argv, "hydra/job_logging"):
            overrides.append("hydra/job_logging=stdout")
    return overrides


def prepare_argv(argv: list[str] | None = None, env: Mapping[str, str] | None = None) -> list[str]:
    """Apply both rewrites to `sys.argv` (or `argv`) in place; call before the `@hydra.main` function."""
    args = sys.argv if argv is None else argv
    translate_group_aliases(args)
    args.extend(torchrun_overrides(args, os.environ if env is None else env))
    return args
