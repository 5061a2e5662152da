"""Weights & Biases logging: one W&B run per training run, files inside the run folder."""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from enhanced_tx.errors import ConfigError
from enhanced_tx.runfolder import RunFolder
from enhanced_tx.tracking.console_log import into_log_only

from .logger import MetricLogger
from .wandb_mode import resolve_wandb_mode, wandb_api_key_configured

_MAX_TAG = 64  # W&B rejects longer tags
FINAL_PREFIXES = ("val/",)  # evaluated metrics (the monitored value among them): summary keeps final/<key>
_SERVER_UNREACHABLE = False  # set when an automatic online start failed: later jobs of a sweep go offline at once


def _server_unreachable() -> None:
    global _SERVER_UNREACHABLE
    _SERVER_UNREACHABLE = True


class WandbLogger(MetricLogger):
    """Logs to W&B as well as ``metrics.jsonl``.

    ``mode=None`` runs online only when an API key is configured (``WANDB_API_KEY``, or a netrc entry
    for the W&B host) and offline otherwise; ``online``/``offline``/``disabled`` force it. W&B writes to
    ``<run_dir>/wandb/``. ``settings`` passes further ``wandb.Settings`` fields (e.g. ``console: "off"``).
    ``quiet`` keeps W&B's own start and end banners (~34 lines a run) in the run folder's log and prints one
    line instead: where the W&B run is, and for an offline run the command that uploads it.
    """

    def __init__(
        self,
        project: str = "enhanced-tx",
        entity: str | None = None,
        mode: str | None = None,
        tags: Iterable[str] = (),
        notes: str | None = None,
        settings: Mapping[str, Any] | None = None,
        quiet: bool = True,
    ) -> None:
        super().__init__()
        self.project = project
        self.entity = entity
        self.mode = mode
        self.tags = list(tags or ())
        self.notes = notes
        self.settings = dict(settings or {})
        self.quiet = quiet
        self._run: Any = None
        self._run_id: str | None = None
        self.resolved_mode: str | None = None

    @property
    def run_id(self) -> str | None:
        return self._run_id

    def _backend_start(
        self,
        config: dict[str, Any],
        choices: dict[str, str | None],
        tags: list[str],
        group: str | None,
        name: str | None,
        job_type: str | None,
        resume_id: str | None,
    ) -> None:
        mode = resolve_wandb_mode(self.mode)
        if mode == "online" and self.mode is None and _SERVER_UNREACHABLE:
            mode = "offline"  # an earlier job in this process found the server unreachable: do not wait again
        self.resolved_mode = mode
        if mode == "disabled":
            return  # nothing to do: skip even importing wandb
        if mode == "online" and not wandb_api_key_configured():
            # wandb.init would prompt for a key on a terminal and hang a batch job elsewhere
            raise ConfigError(
                "logger.mode=online but no W&B API key is configured; run `wandb login` or set "
                "WANDB_API_KEY, or use logger.mode=offline"
            )
        import wandb

        kwargs = dict(
            project=self.project,
            entity=self.entity,
            dir=os.fspath(self.run_dir),
            config={**config, "choices": choices},
            tags=_unique_tags([*self.tags, *tags, *choice_tags(choices)]),
            group=group,
            name=name,
            job_type=job_type,
            notes=self.notes,
            id=resume_id,
            resume="allow" if resume_id else None,
            reinit="finish_previous",  # one process runs several jobs in a sweep
        )
        try:
            with self._chatter():
                self._run = wandb.init(**kwargs, settings=wandb.Settings(mode=mode, **self.settings))
        except (wandb.errors.CommError, wandb.errors.UsageError) as error:
            if mode != "online":
                raise
            reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
            if self.mode == "online":  # asked for explicitly: say so instead of silently going offline
                raise ConfigError(
                    f"logger.mode=online but W&B could not start online ({reason}); "
                    "use logger.mode=offline and `wandb sync` the run folder later"
                ) from None
            _server_unreachable()
            print(
                f"warning: W&B could not start online ({reason}); logging offline instead "
                "(`wandb sync` the run's wandb/ folder later)",
                file=sys.stderr,
            )
            mode = "offline"
            with self._chatter():
                self._run = wandb.init(**kwargs, settings=wandb.Settings(mode=mode, **self.settings))
        self.resolved_mode = mode
        if self.quiet:
            print(where_the_run_is(self._run, mode))
        self._run_id = self._run.id
        self._run.define_metric("val/loss", summary="min")
        # summary columns W&B's grouping and parallel-coordinates views read without setup
        self._run.summary.update({f"choice/{group}": option for group, option in _own_choices(choices)})

    def _backend_log(self, metrics: dict[str, Any], step: int) -> None:
        if self._run is not None:
            self._run.log(metrics, step=step)
            # the summary of val/loss is its minimum (define_metric): keep the last evaluation too
            finals = {f"final/{k}": v for k, v in metrics.items() if k.startswith(FINAL_PREFIXES)}
            if finals:
                self._run.summary.update(finals)

    def _backend_log_table(self, key: str, columns: list[str], rows: list[list[Any]], step: int) -> None:
        if self._run is not None:
            import wandb

            # mixed types: a column of mostly text with one number must not end a training run
            table = wandb.Table(columns=columns, data=rows, allow_mixed_types=True)
            self._run.log({key: table}, step=step)

    def _backend_summary(self, values: dict[str, Any]) -> None:
        if self._run is not None:
            self._run.summary.update(values)

    def _backend_finish(self, exit_code: int) -> None:
        if self._run is not None:
            run, self._run = self._run, None
            with self._chatter():
                run.finish(exit_code=exit_code)

    def _chatter(self) -> contextlib.AbstractContextManager:
        """Where W&B's console output goes: the run folder's log when quiet, else the console."""
        return into_log_only(RunFolder(self.run_dir).log) if self.quiet else contextlib.nullcontext()


def where_the_run_is(run: Any, mode: str) -> str:
    """The one line a quiet logger prints for a W&B run: its page online, else its folder and the upload command."""
    if mode == "online":
        return f"W&B: {run.url}"
    folder = Path(run.dir).parent  # RUN/wandb/offline-run-DATE-ID (run.dir is its files/ folder)
    return f"W&B offline run in {folder}; upload it with: wandb sync {shlex.quote(str(folder))}"


def choice_tags(choices: Mapping[str, str | None]) -> list[str]:
    """``group=option`` tags for the run's config-group choices, without Hydra's own groups."""
    return [f"{group}={option}" for group, option in _own_choices(choices)]


def _own_choices(choices: Mapping[str, str | None]) -> list[tuple[str, str]]:
    return [(group, option) for group, option in choices.items() if option and not group.startswith("hydra")]


def _unique_tags(tags: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(str(t)[:_MAX_TAG] for t in tags if t))
