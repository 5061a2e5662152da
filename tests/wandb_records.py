"""Read an offline W&B run back from its ``run-ID.wandb`` file (tests only; the SDK ships no Python reader).

The file is W&B's LevelDB-style log: a 7-byte header (``:W&B``, magic, version), then 32 KiB blocks of
chunks (crc32, little-endian length, type: full/first/middle/last), each record a protobuf ``Record``.
"""

from __future__ import annotations

import json
from pathlib import Path

from wandb.proto import wandb_internal_pb2

BLOCK = 32 * 1024
CHUNK_HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def read_records(path: Path) -> list[wandb_internal_pb2.Record]:
    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    records, pending, pos = [], b"", 7
    while pos + CHUNK_HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < CHUNK_HEADER:  # block trailer: zero padding
            pos += left
            continue
        length = int.from_bytes(data[pos + 4 : pos + 6], "little")
        kind = data[pos + 6]
        chunk = data[pos + CHUNK_HEADER : pos + CHUNK_HEADER + length]
        pos += CHUNK_HEADER + length
        if kind == FULL:
            records.append(chunk)
        elif kind == FIRST:
            pending = chunk
        elif kind == MIDDLE:
            pending += chunk
        elif kind == LAST:
            records.append(pending + chunk)
    return [wandb_internal_pb2.Record.FromString(r) for r in records]


def offline_run(folder: Path) -> dict:
    """``run`` (group, job_type), ``history`` (key -> value), ``summary`` and ``tables`` (key -> rows)."""
    (path,) = folder.glob("run-*.wandb")
    run, history, summary = {}, {}, {}
    for record in read_records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run = {"group": record.run.run_group, "job_type": record.run.job_type, "project": record.run.project}
        elif kind == "history":
            _merge(history, record.history.item)
        elif kind == "summary":
            _merge(summary, record.summary.update)
    tables = {}
    for key, value in history.items():
        if isinstance(value, dict) and value.get("_type") == "table-file":
            table = json.loads((folder / "files" / value["path"]).read_text())
            tables[key] = [dict(zip(table["columns"], row, strict=True)) for row in table["data"]]
    return {"run": run, "history": history, "summary": summary, "tables": tables}


def _merge(into: dict, items) -> None:
    """Items name their key directly or as a path (``nested_key``: a table's fields); nest the latter."""
    for item in items:
        path = [item.key] if item.key else list(item.nested_key)
        node = into
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = json.loads(item.value_json)
