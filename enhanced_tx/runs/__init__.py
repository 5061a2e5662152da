"""Runs and sweeps on disk: list, show, diff, compare (``python -m enhanced_tx.runs``) and pick the best job.

Reads run folders only (through `enhanced_tx.runfolder.RunFolder` and the report's `sweep_reader`): no W&B,
no torch, so listing a thousand runs is fast.
"""

from .best import BestRun, best_run, newest_sweep
from .catalog import find_jobs

__all__ = ["BestRun", "best_run", "find_jobs", "newest_sweep"]
