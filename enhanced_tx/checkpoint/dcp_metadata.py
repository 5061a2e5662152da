"""Reading a DCP folder's `.metadata` without running code.

torch.distributed.checkpoint stores the index of a sharded checkpoint as a pickle, and its FileSystemReader
loads it with `pickle.load`: a crafted `.metadata` in a run folder from elsewhere would run any code. This
reader unpickles it with only the names a metadata file holds (DCP's metadata dataclasses, torch.Size,
dtypes, layouts, paths); anything else is a CheckpointError naming the file and the name. The shards'
other contents are read by DCP as before (tensors as raw bytes, other values with `weights_only=True`).
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch
from torch.distributed.checkpoint import metadata as dcp_metadata
from torch.distributed.checkpoint.filesystem import FileSystemReader

from enhanced_tx.errors import CheckpointError

# (module, name) pairs a metadata pickle refers to, besides DCP's own metadata classes and torch's dtypes
_ALLOWED = {
    ("torch", "Size"),
    ("torch.serialization", "_get_layout"),  # torch.strided & co. by name
    ("torch.distributed.checkpoint.filesystem", "_StorageInfo"),
    ("pathlib", "PosixPath"),
    ("pathlib", "WindowsPath"),
    ("pathlib", "PurePosixPath"),
    ("collections", "OrderedDict"),
}


class _MetadataUnpickler(pickle.Unpickler):
    def __init__(self, file: Any, source: Path) -> None:
        super().__init__(file)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        if module == dcp_metadata.__name__ and isinstance(getattr(dcp_metadata, name, None), type):
            return getattr(dcp_metadata, name)
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype | torch.memory_format):
            return getattr(torch, name)
        raise CheckpointError(
            f"{self.source} names {module}.{name}, which a checkpoint index never holds; refusing to load it "
            "(use a checkpoint written by enhanced-tx, or the run's model.safetensors)"
        )


def read_metadata(path: Path) -> dcp_metadata.Metadata:
    """The `Metadata` in the file at `path`, unpickled with the names above only."""
    try:
        with open(path, "rb") as f:
            metadata = _MetadataUnpickler(f, path).load()
    except (CheckpointError, OSError):  # OSError: DCP looks for a per-rank index first, then the shared one
        raise
    except Exception as error:  # truncated or not a pickle: the pickle module's many errors
        raise CheckpointError(f"{path} is not a readable checkpoint index ({type(error).__name__})") from None
    if not isinstance(metadata, dcp_metadata.Metadata):
        raise CheckpointError(f"{path} holds a {type(metadata).__name__}, not a checkpoint index")
    return metadata


class SafeFileSystemReader(FileSystemReader):
    """DCP's FileSystemReader with `read_metadata` above: pass as `dcp.load(..., storage_reader=...)`."""

    def __init__(self, path: str | Path, **kwargs: Any) -> None:
        super().__init__(path, **kwargs)
        index = Path(path) / ".metadata"
        if index.is_file():  # refused here in one line: inside dcp.load the error is wrapped in an AssertionError
            read_metadata(index)

    def read_metadata(self, *args: Any, **kwargs: Any) -> dcp_metadata.Metadata:
        locate = getattr(self, "_get_metadata_path", None)  # private in torch; `.metadata` where it is absent
        path = Path(locate(kwargs.get("rank"))) if locate is not None else Path(self.path) / ".metadata"
        metadata = read_metadata(path)
        if getattr(metadata, "storage_meta", None) is None:
            metadata.storage_meta = dcp_metadata.StorageMeta()
        metadata.storage_meta.load_id = self.load_id
        return metadata
