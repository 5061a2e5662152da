"""When the loop evaluates: every trainer.eval_every steps, and at each quarter of the run too when that
would evaluate only at the end (a 30-step run with eval_every=100, or a budget run whose number of steps is
unknown), so every curve has points. The end of the run is always evaluated by the loop."""

from __future__ import annotations

from enhanced_tx.training.budget import Budget

MIN_EVALUATIONS = 4  # per run, counting the final one


class EvalSchedule:
    def __init__(self, eval_every: int, budget: Budget, progress: float, marks: int = MIN_EVALUATIONS) -> None:
        self.eval_every = eval_every
        # eval_every already gives a curve (one evaluation before the end, and the end): leave it as set
        enough = budget.steps_only and budget.max_steps // eval_every >= 2
        # progress marks still ahead of a resumed run: those behind it were evaluated before it stopped
        self._marks = [] if enough else [i / marks for i in range(1, marks) if i / marks > progress]

    @property
    def marks(self) -> list[float]:
        return list(self._marks)

    def due(self, step: int, progress: float) -> bool:
        """Whether to evaluate after this step (at `progress` of the run)."""
        crossed = bool(self._marks) and progress >= self._marks[0]
        while self._marks and progress >= self._marks[0]:
            self._marks.pop(0)
        return crossed or step % self.eval_every == 0
