"""The training progress bar follows whatever limit ends the run: steps out of trainer.max_steps when that is
the only limit, else the percentage used of the budget (tokens, FLOPs or minutes, whichever is furthest
along), so its ETA is that limit's, not a million steps'."""

from __future__ import annotations

from tqdm.auto import tqdm

from enhanced_tx.training.budget import Budget
from enhanced_tx.training.state import TrainingState

_BUDGET_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}{postfix}]"


class ProgressBar:
    """tqdm over the run's limit; `advance(state)` after each step."""

    def __init__(self, budget: Budget, state: TrainingState, enabled: bool) -> None:
        self.budget, self.steps_only = budget, budget.steps_only
        if self.steps_only:
            self._bar = tqdm(total=budget.max_steps, initial=state.step, desc="train", dynamic_ncols=True,
                             disable=not enabled)  # fmt: skip
        else:
            self._bar = tqdm(total=100.0, initial=0.0, desc=self._describe(state), bar_format=_BUDGET_FORMAT,
                             dynamic_ncols=True, disable=not enabled)  # fmt: skip
            self._bar.update(self._percent(state))
        self._step = state.step

    def advance(self, state: TrainingState) -> None:
        if self.steps_only:
            self._bar.update(state.step - self._step)
        else:
            self._bar.set_description_str(self._describe(state), refresh=False)
            self._bar.update(self._percent(state) - self._bar.n)
        self._step = state.step

    def set_postfix(self, **values: str) -> None:
        if not self.steps_only:
            values = {"step": str(self._step), **values}
        self._bar.set_postfix(**values)

    def close(self) -> None:
        self._bar.close()

    def _fractions(self, state: TrainingState) -> dict[str, float]:
        return self.budget.fractions(state.step, state.tokens, state.flops, state.train_seconds)

    def _percent(self, state: TrainingState) -> float:
        return 100.0 * min(1.0, max([0.0, *self._fractions(state).values()]))

    def _describe(self, state: TrainingState) -> str:
        """`train (minutes)`: the limit that is furthest along, the one that will end the run."""
        fractions = self._fractions(state)
        if not fractions:
            return "train"
        return f"train ({max(fractions, key=lambda k: (fractions[k], k != 'steps'))})"  # a tie: the budget
