"""``metrics.jsonl``: every logged metric, one JSON object a line, readable without W&B."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def to_jsonable(value: Any) -> Any:
    """Tensors and NumPy values become Python numbers or lists (``tolist`` does both); containers recurse."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if hasattr(value, "tolist"):  # torch.Tensor, np.ndarray, np.float32(...): a 0-d one gives a scalar
        return to_jsonable(value.tolist())
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [to_jsonable(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return str(value)


class JsonlWriter:
    """Appends ``{"step": ..., "time": ..., **metrics}`` lines, flushed one by one so a crash loses none."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # append: a resumed run continues the same file
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def write(self, metrics: Mapping[str, Any], step: int | None = None) -> dict:
        """Write one line; returns the record as written (numbers converted)."""
        record = {"step": step, "time": time.time(), **{k: to_jsonable(v) for k, v in metrics.items()}}
        self._file.write(json.dumps(record, default=str) + "\n")
        self._file.flush()
        return record

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """All records of a JSONL file; a torn last line (a crash mid-write) is dropped, torn middle lines raise."""
    # split on "\n" only: str.splitlines also breaks at U+2028, U+0085 ..., which JSON text may hold raw
    lines = Path(path).read_text(encoding="utf-8").split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as e:
            if number == len(lines):
                break
            raise ValueError(f"{path}:{number} is not valid JSON ({e.msg})") from None
    return records
