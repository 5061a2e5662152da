"""How long a run trains: steps, epochs and compute budgets, and its progress against them."""

from __future__ import annotations

import math
from dataclasses import dataclass

from enhanced_tx.errors import ConfigError


@dataclass
class Budget:
    """The limits of a run; the first one reached ends it. Progress (0..1) drives the LR schedule."""

    max_steps: int | None = None
    tokens: float | None = None  # non-padding source + target tokens
    flops: float | None = None  # model FLOPs (forward + backward)
    minutes: float | None = None  # wall clock of training steps, evaluation excluded

    def __post_init__(self) -> None:
        limits = {
            "trainer.max_steps (or trainer.epochs)": self.max_steps,
            "trainer.budget.tokens": self.tokens,
            "trainer.budget.flops": self.flops,
            "trainer.budget.minutes": self.minutes,
        }
        set_limits = {k: v for k, v in limits.items() if v is not None}
        if not set_limits:
            raise ConfigError(
                "no training limit: set trainer.max_steps, trainer.epochs or a trainer.budget "
                "(tokens, flops or minutes)"
            )
        for key, value in set_limits.items():
            if not value > 0:
                raise ConfigError(f"{key}={value} must be positive")

    def progress(self, step: int, tokens: float, flops: float, seconds: float) -> float:
        """The largest fraction of any limit used so far."""
        return max([0.0, *self.fractions(step, tokens, flops, seconds).values()])

    def fractions(self, step: int, tokens: float, flops: float, seconds: float) -> dict[str, float]:
        """The fraction used of each limit that is set: steps, tokens, flops, minutes."""
        used = {"steps": (step, self.max_steps), "tokens": (tokens, self.tokens), "flops": (flops, self.flops),
                "minutes": (seconds / 60.0, self.minutes)}  # fmt: skip
        return {name: done / limit for name, (done, limit) in used.items() if limit}

    @property
    def steps_only(self) -> bool:
        """Only a step count ends the run (its number of steps is known in advance)."""
        return self.tokens is None and self.flops is None and self.minutes is None

    def estimated_steps(self, tokens_per_step: float, flops_per_step: float) -> int | None:
        """A step estimate for progress bars (budgets in tokens or FLOPs are exact only in hindsight)."""
        estimates = [self.max_steps] if self.max_steps else []
        if self.tokens and tokens_per_step:
            estimates.append(math.ceil(self.tokens / tokens_per_step))
        if self.flops and flops_per_step:
            estimates.append(math.ceil(self.flops / flops_per_step))
        return min(estimates) if estimates else None

    def as_dict(self) -> dict:
        return {"max_steps": self.max_steps, "tokens": self.tokens, "flops": self.flops, "minutes": self.minutes}


def resumed_budget(
    configured: Budget, stored: dict | None, stored_limits: dict | None, limits: dict
) -> tuple[Budget, str | None]:
    """The budget a resumed run trains to, and a warning when it differs from the stored one.

    The schedule is laid out over the total the run started with (stored in the checkpoint), so a resumed
    run ends as the straight one. Other limits now (a longer run) win, with a warning: the LR schedule then
    spans the new total."""
    if not stored:
        return configured, None
    saved = Budget(**stored)
    # the limits as configured: an epoch count gives another number of steps at another world size
    changed = stored_limits != limits if stored_limits is not None else saved != configured
    if not changed or saved == configured:
        return saved, None
    was, now = saved.as_dict(), configured.as_dict()
    steps = "trainer.max_steps" if limits.get("epochs") is None else "steps (trainer.epochs, trainer.max_steps)"
    totals = "; ".join(
        f"{steps if k == 'max_steps' else 'trainer.budget.' + k}: {_total(was[k])} -> {_total(now[k])}"
        for k in was
        if was[k] != now[k]
    )
    return configured, (
        f"warning: resuming with other training limits than the checkpoint's ({totals}); training to the new "
        "total, and the LR schedule now spans it: the run is no longer identical to a straight run"
    )


def _total(value) -> str:
    return "unset" if value is None else f"{value:g}" if isinstance(value, float) else str(value)
