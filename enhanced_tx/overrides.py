"""Command-line checks that run before Hydra composes: an unknown group option is one line, not a page."""

from __future__ import annotations

import sys
from pathlib import Path


def check_group_options(conf_dir: str | Path, argv: list[str] | None = None) -> None:
    """Exit with a one-line error when `group=option` names an option file that does not exist.

    Sweeps (`a,b`), lists of options (`callbacks=[ema,early_stopping]`, `[]` for none), deletions (`~group`)
    and additions (`+group=...`) are checked option by option; keys that are not config groups are left to Hydra.
    """
    conf = Path(conf_dir)
    for arg in sys.argv[1:] if argv is None else argv:
        key, sep, value = arg.lstrip("+").partition("=")
        if not sep or key.startswith(("~", "-")) or "." in key or not value:
            continue
        group = conf / key
        if not group.is_dir() or value.startswith(("choice(", "range(", "interval(", "glob(", "null")):
            continue
        available = sorted(p.stem for p in group.glob("*.yaml"))
        for option in value.replace("[", ",").replace("]", ",").split(","):
            if option and option not in available:
                raise SystemExit(f"error: unknown option {key}={option}; available: {', '.join(available)}")
