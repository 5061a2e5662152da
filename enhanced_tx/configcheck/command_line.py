"""Compose the config a command line asks for and check it before Hydra creates a run folder.

A sweep is checked value by value (each value of each swept key once, the others at their first value), so
a typo in the fourth value stops the sweep before the first job trains. Problems exit with one line.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from omegaconf import DictConfig

from enhanced_tx.configcheck.schema import added_key_problems, all_keys, closest_key, config_problems
from enhanced_tx.errors import EnhancedTxError, one_line, unwrap

# Hydra's own flags: those that print instead of running skip the check; those with a value are stepped over
_NOT_A_RUN = {"--help", "-h", "--hydra-help", "--version", "--cfg", "-c", "--info", "-i", "--shell-completion",
              "-sc", "--experimental-rerun"}  # fmt: skip
_WITH_VALUE = {"--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd", "--package", "-p"}


def check_command_line(
    conf_dir: str | Path,
    config_name: str,
    argv: list[str] | None = None,
    check: Callable[[DictConfig], None] | None = None,
) -> None:
    """Exit with `error: <one line>` when the config of `argv` (default: sys.argv[1:]) cannot run: an unknown
    key (with the closest valid one), a value of the wrong type, a `???` not given, or whatever `check`
    (an EnhancedTxError) finds in a composed config."""
    args = sys.argv[1:] if argv is None else argv
    overrides, config_name = _overrides(args, config_name)
    if overrides is None:
        return
    try:
        for cfg, defaults in _composed(Path(conf_dir).resolve(), config_name, overrides):
            choices = {k: str(v) for k, v in cfg.hydra.runtime.choices.items() if v is not None}
            added = [o[1:].partition("=")[0] for o in overrides if o.startswith("+") and not o.startswith("++")]
            added = [key for key in added if not _is_group_choice(Path(conf_dir).resolve(), key)]
            problems = config_problems(cfg, choices, defaults) + added_key_problems(added, cfg, defaults)
            if problems:
                raise EnhancedTxError(problems[0])
            if check is not None:
                _run_check(check, cfg)
    except EnhancedTxError as error:
        raise SystemExit(f"error: {one_line(error)}") from None


def _run_check(check: Callable[[DictConfig], None], cfg: DictConfig) -> None:
    """`check(cfg)`, with Hydra's "Error in call to target" wrapper taken off a user error it raises."""
    try:
        check(cfg)
    except Exception as error:
        if isinstance(unwrap(error), EnhancedTxError):
            raise unwrap(error) from None
        raise


def _overrides(args: list[str], config_name: str) -> tuple[list[str] | None, str]:
    """The overrides in `args` and the config name (`--config-name`); None when Hydra will not run a job."""
    overrides, i = [], 0
    while i < len(args):
        flag, has_value, value = args[i].partition("=")
        if flag in _NOT_A_RUN:
            return None, config_name
        if flag in _WITH_VALUE:
            if not has_value:
                i += 1
                value = args[i] if i < len(args) else ""
            config_name = value if flag in ("--config-name", "-cn") else config_name
        elif not args[i].startswith("-"):
            overrides.append(args[i])
        i += 1
    return overrides, config_name


def _composed(conf_dir: Path, config_name: str, overrides: list[str]) -> Iterator[tuple[DictConfig, DictConfig]]:
    """(config, its defaults) for each variant of the sweep in `overrides`; defaults keep only the choices."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException

    if GlobalHydra.instance().is_initialized():  # a caller composed before us (tests): start from scratch
        GlobalHydra.instance().clear()
    composed_defaults: dict[tuple[str, ...], DictConfig] = {}  # one per combination of group choices
    with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
        for variant in _variants(overrides):
            groups = tuple(o for o in variant if _is_group_choice(conf_dir, o))
            try:
                if groups not in composed_defaults:
                    composed_defaults[groups] = compose(config_name, overrides=list(groups), return_hydra_config=True)
            except HydraException as error:
                raise EnhancedTxError(_composition_error(error, None)) from None
            defaults = composed_defaults[groups]
            try:
                cfg = compose(config_name, overrides=variant, return_hydra_config=True)
            except HydraException as error:
                raise EnhancedTxError(_composition_error(error, defaults)) from None
            yield cfg, defaults


def _is_group_choice(conf_dir: Path, override: str) -> bool:
    key = override.lstrip("+~").partition("=")[0]
    return (conf_dir / key).is_dir() or key.startswith("hydra/")


def _variants(overrides: list[str]) -> Iterator[list[str]]:
    """The overrides with each swept key at its first value, then one variant per further value of each key.
    Sweeps without a list of values (`interval(...)`, for Optuna) are left to the sweeper."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as error:
        raise EnhancedTxError(_first_line(error)) from None
    values: list[list[str]] = []
    for override in parsed:
        prefix = {"ADD": "+", "DEL": "~", "FORCE_ADD": "++"}.get(override.type.name, "")
        line = override.input_line or ""
        if override.is_sweep_override():
            swept = list(override.sweep_string_iterator()) if override.is_discrete_sweep() else []
            values.append([f"{prefix}{override.key_or_group}={v}" for v in swept])
        else:
            values.append([line])
    first = [v[0] for v in values if v]
    yield first
    for i, options in enumerate(values):
        for option in options[1:]:
            yield [option if j == i else v[0] for j, v in enumerate(values) if v]


def _composition_error(error: Exception, defaults: DictConfig | None) -> str:
    """Hydra's composition error as one line; for a key the config lacks, the closest one it has."""
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError

    text = _first_line(error)
    if isinstance(error.__cause__, ConfigKeyError | ConfigAttributeError) and text.startswith("Could not override"):
        key = text.split("'")[1]
        known = all_keys(defaults) if defaults is not None else []
        guess = closest_key(key, known)
        return f"unknown key {key}: did you mean {guess}?" if guess else f"unknown key {key}: not in the config"
    if text.startswith("Could not append to config. An item is already at"):
        key = text.split("'")[1]
        return f"{key} is in the config already: set it without '+' ({key}=...)"
    return text


def _first_line(error: Exception) -> str:
    return " ".join(str(error).split("\n")[0].split()) or type(error).__name__
