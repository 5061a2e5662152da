"""The prompts of `run_generate.py`: `prompt=` as typed (numbers stay text) and `prompts_file` (one a line)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from enhanced_tx.errors import ConfigError


def read_prompts_file(path: str | Path) -> list[str]:
    """One prompt a line, kept as written (line ends and a byte-order mark removed, blank lines skipped); a
    missing or empty file is a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"prompts_file={path} does not exist; pass a text file with one prompt a line")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise ConfigError(f"prompts_file={path} is not UTF-8 text (byte {e.start}); save it as UTF-8") from None
    prompts = [line.removesuffix("\r") for line in text.split("\n") if line.strip()]
    if not prompts:
        raise ConfigError(f"prompts_file={path} holds no prompts; write one prompt a line")
    return prompts


def prompt_list(prompt: object, typed: str | None = None) -> list[str]:
    """`prompt=` as a list of strings. Hydra parses `prompt=1984` as an int and `prompt=3.10` as a float: they
    are text too, as typed (`typed`: the override's text, where known; else the value written back). A list
    (`prompt=[a,b]`) is one batch."""
    if typed is not None and isinstance(prompt, int | float) and not isinstance(prompt, str):
        return [typed]
    items = list(prompt) if isinstance(prompt, Sequence) and not isinstance(prompt, str) else [prompt]
    if not items:
        raise ConfigError('prompt=[] is empty: give prompt="..." or prompts_file=PATH (one prompt a line)')
    texts = []
    for item in items:
        if isinstance(item, bool):
            texts.append(str(item).lower())
        elif isinstance(item, str | int | float):
            texts.append(str(item))
        else:
            raise ConfigError(
                f"prompt={prompt!r} must be a string or a list of strings: quote it, prompt='\"...\"', "
                "or use prompts_file=PATH (one prompt a line)"
            )
    return texts


def typed_override(key: str) -> str | None:
    """The text the user typed for `key=` on the command line (before Hydra parsed it), if any."""
    try:
        from hydra.core.hydra_config import HydraConfig

        overrides = HydraConfig.get().overrides.task
    except (ImportError, ValueError):  # no Hydra run (the compose API, a script)
        return None
    typed = [o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0].lstrip("+~") == key]
    return typed[-1] if typed else None
