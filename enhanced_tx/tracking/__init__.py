"""Tracking: W&B and local metric logging, run metadata.

Every logger writes ``<run_dir>/metrics.jsonl``; ``WandbLogger`` also keeps a W&B run in
``<run_dir>/wandb/`` (offline unless an API key is configured). See docs/tracking.md.
"""

from .jsonl import JsonlWriter, read_jsonl, to_jsonable
from .logger import MetricLogger, NullLogger
from .run_info import collect_run_info, write_run_info
from .wandb_logger import WandbLogger
from .wandb_mode import resolve_wandb_mode, wandb_api_key_configured

__all__ = [
    "JsonlWriter",
    "MetricLogger",
    "NullLogger",
    "WandbLogger",
    "collect_run_info",
    "read_jsonl",
    "resolve_wandb_mode",
    "to_jsonable",
    "wandb_api_key_configured",
    "write_run_info",
]
