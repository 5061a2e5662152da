"""Sweeps: what a job of a Hydra multirun knows about its sweep, and the checks around a sweep.

- `job`: the W&B group and name of a job, the value a failed job returns, its share of the CPU threads.
- `failures`: the ``FAILED.json`` record a failed job leaves in its folder, and reading them back.
- `dirnames`: the ``short_dirname`` resolver that keeps job folder names under the file-name limit.
- `callbacks`: `SweepCallback` (conf/hydra/default.yaml): a clear error for an unusable Optuna storage
  before the sweep, one line per failed job and a non-zero exit after it.

Nothing here imports torch: Hydra instantiates the callback in every process that starts.
"""
