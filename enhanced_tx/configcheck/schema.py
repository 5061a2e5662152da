"""The schema of a composed config, derived from what already declares it (no second copy of any option):

- a node with a `_target_` takes the keys of its target's signature, with the types of its type hints;
- a plain scalar elsewhere (`seed: 0`) keeps the kind of its default in the composed YAML (or null);
- `???` must be given on the command line.

`config_problems` lists the problems, each one line naming the key, what was expected and the fix.
"""

from __future__ import annotations

import difflib
import inspect
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf

from enhanced_tx.configcheck.types import conforms, describe

HYDRA_KEYS = frozenset({"_target_", "_partial_", "_recursive_", "_convert_", "_args_"})
_SCALARS = (bool, int, float)


def config_problems(
    cfg: DictConfig, choices: Mapping[str, str] | None = None, defaults: DictConfig | None = None
) -> list[str]:
    """Every problem of `cfg` (the `hydra` node aside). `choices`: group -> option, named in messages;
    `defaults`: the config composed without the command line's values, whose scalars give the expected kinds."""
    choices = dict(choices or {})
    problems = [_missing(key, choices) for key in _missing_keys(cfg)]
    for prefix, node in _nodes(cfg):
        target = node._get_node("_target_") if "_target_" in node else None
        if target is not None and not OmegaConf.is_interpolation(node, "_target_"):
            problems += _target_problems(prefix, node, str(target._value()), defaults)
        elif defaults is not None:
            problems += _scalar_problems(prefix, node, defaults)
    return problems


def closest_key(key: str, known: list[str]) -> str | None:
    """The known key `key` was most likely meant to be (same parent preferred), or None."""
    parent = key.rpartition(".")[0]
    siblings = [k for k in known if k.rpartition(".")[0] == parent]
    for pool in (siblings, known):
        match = difflib.get_close_matches(key, pool, n=1, cutoff=0.75)
        if match:
            return match[0]
    return None


def added_key_problems(added: list[str], cfg: DictConfig, defaults: DictConfig) -> list[str]:
    """Keys added with `+key=value` that no YAML declares and no target takes (those are checked by
    signature): `+trainer.max_step=3` is a typo, not a new setting."""
    known = all_keys(defaults)
    problems = []
    for key in added:
        parent = key.rpartition(".")[0]
        node = OmegaConf.select(cfg, parent, default=None) if parent else cfg
        if key not in known and not (isinstance(node, DictConfig) and "_target_" in node):
            problems.append(_unknown(key, [k for k in known if k != key]))
    return problems


def all_keys(cfg: DictConfig) -> list[str]:
    """Every dotted key of `cfg` below its root, the `hydra` node aside."""
    return [f"{prefix}{key}" for prefix, node in _nodes(cfg) for key in node if key not in HYDRA_KEYS]


def _nodes(cfg: DictConfig, prefix: str = "") -> Iterator[tuple[str, DictConfig]]:
    """(dotted prefix, node) for `cfg` and every mapping below it that is a value (not null/???/${...})."""
    yield prefix, cfg
    for key in cfg:
        if not prefix and key == "hydra":
            continue
        for name, child in _children(cfg, key):
            if isinstance(child, DictConfig) and not _unset(child):
                yield from _nodes(child, f"{prefix}{name}.")


def _children(cfg: DictConfig, key) -> list[tuple[str, object]]:
    child = cfg._get_node(key)
    if isinstance(child, ListConfig) and not _unset(child):
        return [(f"{key}[{i}]", child._get_node(i)) for i in range(len(child))]
    return [(str(key), child)]


def _unset(node) -> bool:
    return node._is_missing() or node._is_none() or node._is_interpolation()


def _missing_keys(cfg: DictConfig) -> list[str]:
    return [f"{prefix}{key}" for prefix, node in _nodes(cfg) for key in node if OmegaConf.is_missing(node, key)]


def _missing(key: str, choices: dict[str, str]) -> str:
    group = key.partition(".")[0]
    placeholder = "FILE" if key.endswith("path") else "VALUE"
    where = f" for {group}={choices[group]}" if group in choices and "." in key else ""
    return f"{key} is required{where}: pass {key}={placeholder}"


def _target_problems(prefix: str, node: DictConfig, target: str, defaults: DictConfig | None) -> list[str]:
    from hydra.utils import get_object

    try:
        fn = get_object(target)
    except Exception:  # not importable: instantiating it reports that, with the cause
        return []
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # a builtin without a signature: nothing to check against
        return []
    hints = _type_hints(fn)
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    problems = []
    for key in node:
        key = str(key)
        if key in HYDRA_KEYS:
            continue
        if key not in params:
            if not takes_any:
                problems.append(_unknown(f"{prefix}{key}", [f"{prefix}{p}" for p in params]))
            continue
        if key in hints and not OmegaConf.is_missing(node, key) and not _is_target_node(node, key):
            value = _plain(node, key)
            if value is not _UNRESOLVED and not conforms(value, hints[key]):
                example = _default(defaults, f"{prefix}{key}", params[key].default)
                problems.append(_wrong_type(f"{prefix}{key}", value, describe(hints[key]), example))
    return problems


def _scalar_problems(prefix: str, node: DictConfig, defaults: DictConfig) -> list[str]:
    problems = []
    for key in node:
        full = f"{prefix}{key}"
        default = _default(defaults, full, None)
        if not isinstance(default, _SCALARS) or OmegaConf.is_missing(node, key):
            continue
        value = _plain(node, key)
        if value is None or value is _UNRESOLVED or isinstance(value, DictConfig | ListConfig | list | dict):
            continue
        kind = bool if isinstance(default, bool) else float if isinstance(default, float) else int
        if not conforms(value, kind):
            problems.append(_wrong_type(full, value, describe(kind) + " or null", default))
    return problems


def _unknown(key: str, known: list[str]) -> str:
    guess = closest_key(key, known)
    if guess is not None:
        return f"unknown key {key}: did you mean {guess}?"
    parent = key.rpartition(".")[0] or "the config"
    return f"unknown key {key}: {parent} takes {', '.join(k.rpartition('.')[2] for k in known)}"


def _wrong_type(key: str, value: object, expected: str, example: object) -> str:
    hint = f", e.g. {key}={_shown(example)}" if example not in (None, inspect.Parameter.empty) else ""
    return f"{key}={_shown(value)}: expected {expected}{hint}"


def _shown(value: object) -> str:
    return {True: "true", False: "false"}.get(value, str(value)) if isinstance(value, bool) else str(value)


_UNRESOLVED = object()


def _default(defaults: DictConfig | None, key: str, fallback: object) -> object:
    """The YAML's value of `key` (what the user would have got), else `fallback`."""
    value = None
    if defaults is not None:
        value = OmegaConf.select(defaults, key, default=None, throw_on_resolution_failure=False)
    return value if isinstance(value, (*_SCALARS, str)) else fallback


def _plain(node: DictConfig, key: str) -> object:
    """The value as plain Python, interpolations resolved; _UNRESOLVED where one needs Hydra's runtime."""
    try:
        value = node[key]
        return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
    except Exception:
        return _UNRESOLVED


def _is_target_node(node: DictConfig, key: str) -> bool:
    """A value Hydra instantiates (checked as a node of its own), also behind an interpolation."""
    try:
        child = node[key]
    except Exception:
        return False
    return isinstance(child, DictConfig) and "_target_" in child


def _type_hints(fn) -> dict[str, object]:
    """Parameter annotations as types; those that do not evaluate (names imported for type checking only)
    are left out rather than guessed."""
    init = fn.__init__ if inspect.isclass(fn) else fn
    try:
        return typing.get_type_hints(init)
    except Exception:
        pass
    module = inspect.getmodule(init)
    namespace = {**vars(module), "Path": Path} if module else {}
    hints = {}
    for name, annotation in getattr(init, "__annotations__", {}).items():
        try:
            hints[name] = eval(annotation, namespace) if isinstance(annotation, str) else annotation  # noqa: S307
        except Exception:
            continue
    return hints
