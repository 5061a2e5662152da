"""The retention policy: what a run keeps, from `trainer.checkpoint` and `trainer.keep_last`.

- `full`: every saved state can resume the run exactly (weights, optimizer, RNG, data position). The default of
  a single run. `keep_last: auto` keeps 2 step files (the newest, and one to fall back on if it is damaged);
  `best.pt` shares the bytes of its step file and becomes weights only once that step file is pruned.
- `weights`: states without optimizer state, stored as safetensors, so `model.safetensors` is a hard link of
  the last one: a job costs about one copy of its weights. The default of a multirun sweep job (`auto`),
  which is compared and generated from, never resumed. `keep_last: auto` keeps only what `last.pt` and
  `best.pt` name. A resume from such a state is refused with a one-line message.
- `auto` (default): `weights` inside a Hydra multirun, else `full`.

`trainer.save_optimizer=false` is the older spelling of `checkpoint=weights`.
"""

from __future__ import annotations

from typing import NamedTuple

from enhanced_tx.errors import ConfigError

MODES = ("auto", "full", "weights")
FULL_KEEP_LAST = 2  # the newest step file and one before it: resume=auto falls back if the newest is damaged


class Retention(NamedTuple):
    weights_only: bool
    keep_last: int | None  # None keeps every step file


def retention(checkpoint: str = "auto", keep_last: int | str | None = "auto", save_optimizer: bool = True,
              multirun: bool | None = None) -> Retention:  # fmt: skip
    """The resolved policy; `multirun` None asks Hydra whether this process is a multirun job."""
    problem = check_policy(checkpoint, keep_last)
    if problem:
        raise ConfigError(problem)
    if checkpoint == "auto":
        checkpoint = "weights" if (in_multirun() if multirun is None else multirun) else "full"
    weights_only = checkpoint == "weights" or not save_optimizer
    if keep_last == "auto":
        keep_last = 0 if weights_only else FULL_KEEP_LAST
    return Retention(weights_only, keep_last)  # type: ignore[arg-type]


def check_policy(checkpoint: object, keep_last: object) -> str | None:
    """One line naming the bad key and the fix, or None."""
    if checkpoint not in MODES:
        return f"trainer.checkpoint={checkpoint} must be one of {' | '.join(MODES)} (auto: weights only in a multirun)"
    if keep_last is None or keep_last == "auto":
        return None
    if isinstance(keep_last, bool) or not isinstance(keep_last, int) or keep_last < 0:
        return f"trainer.keep_last={keep_last} must be a whole number >= 0, auto, or null (keep every step file)"
    return None


def in_multirun() -> bool:
    """Whether this process runs a job of a Hydra multirun (`-m`): its checkpoints are never resumed."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode
    except ImportError:
        return False
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
