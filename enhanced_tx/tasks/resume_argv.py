"""`python run_train.py resume=RUN_DIR [overrides]`: continue a run folder from what it saved, no overrides retyped.

The command line becomes the run's own overrides (RUN/.hydra/overrides.yaml), then those given now (a longer
trainer.max_steps, another eval_every: they win), then `trainer.resume=auto hydra.run.dir=RUN_DIR`; the resume
guards still refuse a change to what defines the run.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from enhanced_tx.runfolder import RunFolder
from enhanced_tx.tasks.commands import hydra_value

KEY = "resume"
_REPLACED = ("trainer.resume", "hydra.run.dir")  # set by resume itself


def expand_resume(argv: list[str] | None = None) -> list[str]:
    """Rewrite `argv` (default sys.argv, in place) when it holds `resume=RUN_DIR`; exits with one line when
    RUN_DIR holds no run."""
    args = sys.argv if argv is None else argv
    given = [a for a in args[1:] if _key(a) == KEY]
    if not given:
        return args
    if len(given) > 1 or {"-m", "--multirun"} & set(args):
        raise SystemExit("error: resume=RUN_DIR continues one run: give it once, without -m")
    folder = RunFolder(_value(given[0]))
    if not folder.overrides.is_file():
        raise SystemExit(
            f"error: resume={folder.root}: not a run folder (no {folder.overrides.relative_to(folder.root)}); "
            "pass the folder run_train.py printed as 'run dir:'"
        )
    saved = yaml.safe_load(folder.overrides.read_text(encoding="utf-8")) or []
    now = [a for a in args[1:] if _key(a) != KEY]
    keys_now = {_key(a) for a in now}
    kept = [o for o in saved if _key(o) not in keys_now and _key(o) not in _REPLACED]
    resume = ["trainer.resume=auto", f"hydra.run.dir={hydra_value(str(folder.root.resolve()))}"]
    args[:] = [args[0], *kept, *[a for a in now if _key(a) not in _REPLACED], *resume]
    return args


def _key(override: str) -> str:
    return override.partition("=")[0].lstrip("+~")


def _value(override: str) -> Path:
    """The folder as Hydra reads the value (quotes allowed, as printed by resume_command), else as typed."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    try:
        return Path(str(OverridesParser.create().parse_overrides([override])[0].value()))
    except OverrideParseException:  # a path Hydra's grammar cannot read unquoted: the shell gave it whole
        return Path(override.partition("=")[2])
