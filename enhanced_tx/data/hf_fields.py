"""Field access by dotted name (`translation.en`) in Hugging Face rows, and the error that lists fields."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from enhanced_tx.data.errors import DataError


def get_field(row: Mapping[str, Any], path: str) -> Any:
    """`row["translation"]["en"]` for `translation.en`; KeyError when a part is missing."""
    value: Any = row
    for part in path.split("."):
        if not isinstance(value, Mapping):
            raise KeyError(path)
        value = value[part]
    return value


def field_names(row_or_features: Mapping[str, Any]) -> list[str]:
    """Every field, nested ones dotted: `id, translation.de, translation.en`."""
    return sorted(_names(row_or_features, ""))


def _names(node: Mapping[str, Any], prefix: str) -> Iterator[str]:
    for key, value in node.items():
        name = f"{prefix}{key}"
        children = _children(value)
        if children:
            yield from _names(children, f"{name}.")
        else:
            yield name


def _children(value: Any) -> Mapping[str, Any] | None:
    """Sub-fields of a row value or a feature (dict features, and `Translation(languages=[...])`)."""
    if isinstance(value, Mapping):
        return value
    languages = getattr(value, "languages", None)  # datasets.Translation
    if languages:
        return {lang: None for lang in languages}
    return None


def check_fields(row_or_features: Mapping[str, Any], wanted: Mapping[str, str], name: str) -> None:
    """Every `{config key: field}` in `wanted` exists, else one line naming the key and the fields there are."""
    names = set(field_names(row_or_features))
    for key, field in wanted.items():
        if field not in names:
            raise DataError(
                f"{key}={field}: no such field in data.name={name} (fields: {', '.join(sorted(names))}); "
                f"set {key}=<field name>"
            )
