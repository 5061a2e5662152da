"""Command lines the entry points print for the user to paste: generate from a run, continue a run. Values are
quoted for Hydra and for the shell where needed (sweep job folders hold `=` and `,`)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

DEFAULT_PROMPT = "The transformer architecture is"


def generate_command(run_dir: Path, prompt: str = DEFAULT_PROMPT) -> str:
    """The command line that generates from `run_dir` with `prompt`."""
    run = shell_word(f"run={hydra_value(str(run_dir))}")
    return f"python run_generate.py {run} {shell_word('prompt=' + hydra_value(prompt))}"


def resume_command(run_dir: Path) -> str:
    """The command line that continues `run_dir` from what it saved (`resume=RUN_DIR`, see resume_argv.py)."""
    return f"python run_train.py {shell_word('resume=' + hydra_value(str(run_dir)))}"


def shell_word(word: str) -> str:
    """`word` for a POSIX shell: as is, in double quotes where nothing in it expands there, else shlex's."""
    if shlex.quote(word) == word:
        return word
    return f'"{word}"' if not set(word) & set('"$`\\!') else shlex.quote(word)


def hydra_value(text: str) -> str:
    """`text` as an override value Hydra reads back unchanged: as is where it does, else single-quoted."""
    if _parsed_value(text) == text:
        return text
    escaped = re.sub(r"(\\*)'", lambda m: m.group(1) * 2 + "\\'", text)  # backslashes before a quote double
    escaped = re.sub(r"(\\+)$", lambda m: m.group(1) * 2, escaped)  # and before the closing quote
    return f"'{escaped}'"


def _parsed_value(value: str) -> object:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        return OverridesParser.create().parse_overrides([f"run={value}"])[0].value()
    except Exception:  # a grammar error: the value needs quotes
        return None
