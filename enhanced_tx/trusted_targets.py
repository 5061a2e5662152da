"""A saved run's config is untrusted input: rebuild from it only what the project ships for each key.

`hydra.utils.instantiate` calls whatever `_target_` a config names. A config a user composes on the command
line is their own code and stays free; a config read back from a run folder (`config.resolved.yaml`, the
config inside a checkpoint) may come from anywhere: a downloaded run, a shared results folder.

The rule: a `_target_` at key K of a saved config is trusted when a YAML file the project ships in `conf/`
puts that same target, with the same `_partial_`, at K (the file's `# @package` header, by default its
group's path, plus the key inside the file). `model.norm._target_: enhanced_tx.model.norm.RMSNorm` is
trusted because `conf/norm/rmsnorm.yaml` (`# @package model.norm`) ships it. A new option (its class plus
its YAML file in the group, the way every choice is added) is admitted by that file: nothing here lists
classes. Targets are compared as text before anything is imported, so an untrusted name is never imported.
Interpolations (`${...}`) are refused too: a resolved config holds none, and a resolver reads the environment.
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from enhanced_tx.errors import ConfigError

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
_PACKAGE_HEADER = re.compile(r"#\s*@package\s+(\S+)")
_REFERENCE = re.compile(r"\$\{(?:oc\.select:)?([A-Za-z_][\w.]*)(?:,[^}]*)?\}")  # ${key}, ${oc.select:key,default}
_RUN_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")  # what W&B writes (8 characters) and accepts for `id=`


class UntrustedConfig(ConfigError):
    """A saved config names something the project does not ship for that key."""


_ADMITTED_IN_CODE: dict[str, set[tuple[str, bool]]] = {}  # see `admitted`


@contextlib.contextmanager
def admitted(key: str, target: str, partial: bool = False) -> Iterator[None]:
    """Trust `target` at `key` while the block runs: for a class a Python user builds runs with (their own
    code, e.g. a test's recording logger), without shipping a YAML file for it. A run folder cannot do this."""
    pairs = _ADMITTED_IN_CODE.setdefault(key, set())
    added = (target, partial) not in pairs
    pairs.add((target, partial))
    try:
        yield
    finally:
        if added:
            pairs.discard((target, partial))


def check_trusted_targets(
    cfg: Mapping, where: str, keys: Sequence[str] | None = None, conf_dir: Path = CONF_DIR
) -> None:
    """Refuse (one line naming the key and the target) a saved config `cfg` read from `where` whose
    `keys` (top-level keys; default all) name a `_target_`/`_partial_` the project does not ship there."""
    tree = _plain(cfg)
    shipped = shipped_targets(conf_dir)
    for key in tree if keys is None else keys:
        for path, node in _nodes(tree.get(key), str(key)):
            if isinstance(node, str) and "${" in node:
                raise UntrustedConfig(
                    f"{where}: {path}={node} is an interpolation; a saved run's config must be resolved "
                    "(rebuild it from a run you trust)"
                )
            if isinstance(node, Mapping) and ("_target_" in node or "_partial_" in node):
                target, partial = node.get("_target_"), bool(node.get("_partial_", False))
                trusted = shipped.get(path, frozenset()) | _ADMITTED_IN_CODE.get(path, set())
                if (str(target), partial) not in trusted:
                    raise UntrustedConfig(
                        f"{where}: {path}._target_={target}{' (_partial_)' if partial else ''} is not a class "
                        f"this project ships for {path} (conf/); refusing to build it. Use a run you trust, or "
                        "ship that class as an option: a YAML file in its conf/ group"
                    )


def read_saved_config(path: Path) -> Any:
    """A run folder's YAML config (OmegaConf's safe loader: no Python tags), or a one-line error naming it."""
    try:
        return OmegaConf.load(path)
    except FileNotFoundError:
        raise ConfigError(f"{path} is missing: not a complete training run folder") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise UntrustedConfig(
            f"{path} is not a readable config ({type(error).__name__}: {' '.join(str(error).split())[:160]}); "
            "use a run folder you trust"
        ) from None


def instantiate_trusted(cfg: Mapping, key: str, where: str, **kwargs: Any) -> Any:
    """`hydra.utils.instantiate(cfg[key], **kwargs)` after `check_trusted_targets(cfg, where, [key])`."""
    from hydra.utils import instantiate

    check_trusted_targets(cfg, where, [key])
    return instantiate(cfg[key], **kwargs)


def check_run_id(value: object, where: str) -> str | None:
    """A tracker run id read back from a run folder: None or a plain id, never a path or a structure."""
    if value is None or (isinstance(value, str) and _RUN_ID.fullmatch(value)):
        return value
    raise UntrustedConfig(
        f"{where}: logger_run_id={str(value)[:80]!r} is not a run id (letters, digits, _ and - only); "
        "pass log_to_run=false or use a run you trust"
    )


@functools.lru_cache(maxsize=4)
def shipped_targets(conf_dir: Path = CONF_DIR) -> dict[str, frozenset[tuple[str, bool]]]:
    """{dotted key: {(target, partial), ...}} over every YAML file under `conf_dir`."""
    if not conf_dir.is_dir():
        raise ConfigError(f"{conf_dir} (the project's conf/ folder) is missing: cannot tell which targets it ships")
    found: dict[str, set[tuple[str, bool]]] = {}
    aliases: list[tuple[str, str]] = []  # (key, the key its shipped value interpolates)
    for file in sorted(conf_dir.rglob("*.yaml")):
        content = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
        if not isinstance(content, dict):
            continue
        content.pop("defaults", None)
        group = ".".join(file.parent.relative_to(conf_dir).parts)
        for path, node in _nodes(content, _package(file, group)):
            if isinstance(node, Mapping) and "_target_" in node:
                found.setdefault(path, set()).add((str(node["_target_"]), bool(node.get("_partial_", False))))
            elif isinstance(node, str) and (match := _REFERENCE.fullmatch(node.strip())):
                aliases.append((path, match.group(1)))
    # `data.objective: ${oc.select:objective,null}`: a resolved config holds the objective's target there too
    for alias, source in aliases:
        for path, pairs in list(found.items()):
            if path == source or path.startswith(f"{source}."):
                found.setdefault(alias + path[len(source) :], set()).update(pairs)
    return {path: frozenset(pairs) for path, pairs in found.items()}


def _package(file: Path, group: str) -> str:
    """Where Hydra puts a file's content: its `# @package` header (`_group_` if none), as a dotted key."""
    package = "_group_"
    for line in file.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        if match := _PACKAGE_HEADER.match(line):
            package = match.group(1)
    head, _, rest = package.partition(".")
    if head not in ("_global_", "_group_"):
        return package
    return ".".join(part for part in ("" if head == "_global_" else group, rest) if part)


def _nodes(node: Any, path: str) -> Iterator[tuple[str, Any]]:
    """(dotted key, value) for `node` and everything below it (list items are keyed by their index)."""
    yield path, node
    children: Iterable[tuple[Any, Any]] = ()
    if isinstance(node, Mapping):
        children = node.items()
    elif isinstance(node, list):
        children = enumerate(node)
    for key, value in children:
        if str(key) not in ("_target_", "_partial_"):
            yield from _nodes(value, f"{path}.{key}" if path else str(key))


def _plain(cfg: Mapping) -> dict:
    """A DictConfig as plain containers with interpolations left as written (nothing is resolved)."""
    return OmegaConf.to_container(cfg, resolve=False) if isinstance(cfg, DictConfig) else dict(cfg)
