"""The table every multirun ends with: one line per job (overrides, monitored value, status), then the best job
and the commands for the sweep's report and for generating from the best job."""

from __future__ import annotations

import contextlib
import json
import re
import shlex
from collections.abc import Sequence
from pathlib import Path

import yaml

from enhanced_tx.errors import ConfigError
from enhanced_tx.runfolder import RunFolder
from enhanced_tx.runs.best import DEFAULT_MONITOR, best_run
from enhanced_tx.runs.catalog import find_jobs
from enhanced_tx.tracking.report_table import Row, build_rows

MAX_ROWS = 20  # longer sweeps (Optuna) show their best jobs; the report has them all
DEFAULT_PROMPT = "The transformer architecture is"  # a job that sampled nothing
MAX_LABEL = 72  # characters of a job's overrides in the table (its folder name has them all)


def sweep_summary(sweep_dir: Path, prompt: str | None = None) -> list[str]:
    """The lines that end a multirun over `sweep_dir` (empty when it holds no job); the generate hint uses
    `prompt`, else the best job's own first sample prompt (`job_prompt`)."""
    jobs = find_jobs([sweep_dir]) if sweep_dir.is_dir() else []
    if not jobs:
        return []
    try:
        best = best_run([], sweep=sweep_dir)
    except ConfigError:  # no finished job with weights and the metric
        best = None
    from enhanced_tx.training.monitor import MONITORS  # monitor -> higher is better

    metric = best.metric if best is not None else DEFAULT_MONITOR  # no job has a value: any name will do
    mode = "max" if MONITORS.get(metric, False) else "min"
    rows = build_rows(jobs, metric, mode)
    lines = [f"sweep {sweep_dir}: {_counts(rows)}", *format_table(rows, metric, best.job.job_dir if best else None)]
    if best is None:
        return [*lines, f"no job finished with {metric} and weights: nothing to generate from"]
    sweep = shlex.quote(str(sweep_dir))
    prompt = " ".join((prompt or job_prompt(best.job.job_dir)).split())  # one line to paste
    label = next(r.label for r in rows if r.job.job_dir == best.job.job_dir)  # swept keys of the whole sweep
    return [
        *lines,
        f"best: job {best.job.name} ({label}) {metric} {best.value:.4f}  [{best.job.job_dir}]",
        f"  report:   python -m enhanced_tx.tracking.report {sweep}",
        f"  generate: python run_generate.py run=best sweep={sweep} prompt={_prompt_value(prompt)}",
    ]


def job_prompt(job_dir: Path) -> str:
    """The first prompt a job sampled: its `sample_prompts` (an override), else the first prompt of its
    in-training samples (the first validation source of its own data), else DEFAULT_PROMPT."""
    run = RunFolder(job_dir)
    try:
        given = yaml.safe_load(run.resolved_config.read_text()).get("sample_prompts")
    except (OSError, yaml.YAMLError, AttributeError):
        given = None
    if isinstance(given, list) and given and isinstance(given[0], str):
        return given[0]
    if isinstance(given, str) and given:
        return given
    with contextlib.suppress(OSError):
        for line in run.tables.read_text().splitlines():
            with contextlib.suppress(ValueError, TypeError, KeyError, IndexError, AttributeError):
                table = json.loads(line)
                if table["key"] == "val/samples" and isinstance(table["rows"][0][0], str):
                    return table["rows"][0][0]
    return DEFAULT_PROMPT


def _prompt_value(prompt: str) -> str:
    """`prompt` as the shell must write it for Hydra to read it back unchanged: as is, else Hydra-quoted, then
    in double quotes (or shlex's quotes) for the shell."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        plain = OverridesParser.create().parse_override(f"prompt={prompt}").value() == prompt
    except Exception:  # noqa: BLE001 - Hydra's grammar refuses it: quote it
        plain = False
    value = prompt if plain else _hydra_quoted(prompt)
    if shlex.quote(value) == value:
        return value
    return f'"{value}"' if not set(value) & set('"$`!') and "\\\\" not in value else shlex.quote(value)


def _hydra_quoted(text: str) -> str:
    """`text` as a single-quoted Hydra value that reads back unchanged (quotes escaped, as are the
    backslashes before a quote or at the end)."""
    escaped = re.sub(r"(\\*)'", lambda m: m.group(1) * 2 + "\\'", text)
    return "'" + re.sub(r"(\\+)$", lambda m: m.group(1) * 2, escaped) + "'"


def format_table(rows: Sequence[Row], metric: str, best_dir: Path | None = None) -> list[str]:
    """Fixed-width lines: job, overrides, `metric`, status; the best job marked `*`; at most MAX_ROWS jobs
    (the best ones, then a line saying how many more)."""
    shown = list(rows[:MAX_ROWS])
    cells = [("job", "overrides", metric, "status")]
    for row in sorted(shown, key=lambda r: (r.job.num is None, r.job.num or 0, r.job.name)):
        value = row.numbers.get("best")
        mark = "*" if best_dir is not None and row.job.job_dir == best_dir else ""
        label = row.label if len(row.label) <= MAX_LABEL else row.label[: MAX_LABEL - 3] + "..."
        cells.append((f"{row.job.name}{mark}", label, "-" if value is None else f"{value:.4f}", row.status))
    widths = [max(len(c[i]) for c in cells) for i in range(3)]
    lines = ["  " + "  ".join(c[i].ljust(widths[i]) for i in range(3)) + "  " + c[3] for c in cells]
    if len(rows) > MAX_ROWS:
        lines.append(f"  ... and {len(rows) - MAX_ROWS} more jobs (the {MAX_ROWS} best are shown)")
    return [line.rstrip() for line in lines]


def _counts(rows: Sequence[Row]) -> str:
    statuses: dict[str, int] = {}
    for row in rows:
        statuses[row.status] = statuses.get(row.status, 0) + 1
    return f"{len(rows)} jobs, " + ", ".join(f"{n} {status}" for status, n in sorted(statuses.items()))
