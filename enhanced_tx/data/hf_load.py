"""Opening a Hugging Face dataset split three ways, with one-line errors.

`data.name` is (1) a folder written by `save_to_disk` (`load_from_disk`), (2) a builder name with
`data.data_files` (`parquet`, `json`, `arrow`, `text`, `csv`), or (3) anything else `load_dataset` takes: a hub
name (served from the local HF cache when offline) or a local dataset repository folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from enhanced_tx.data.errors import DataError

OFFLINE_HINT = "not in the local cache; run once with network or point data.name at a local folder"


def open_split(
    name: str, config: str | None, data_files: Any, split: str, streaming: bool, key: str = "data.split"
) -> Any:
    """The `split` of the dataset (a `Dataset`, or an `IterableDataset` with `streaming`)."""
    import datasets

    folder = Path(name).expanduser()
    if _saved_to_disk(folder):
        return _from_disk(folder, split, streaming, key)
    try:
        splits = datasets.load_dataset(name, config, data_files=data_files, streaming=streaming)
    except ConnectionError as error:  # offline (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE) or no network
        raise DataError(f"data.name={name}{_config(config)}: {OFFLINE_HINT} ({_short(error)})") from None
    except (FileNotFoundError, datasets.exceptions.DatasetNotFoundError) as error:
        hint = OFFLINE_HINT if datasets.config.HF_HUB_OFFLINE else "no such dataset or file"
        raise DataError(f"data.name={name}{_config(config)}: {hint} ({_short(error)})") from None
    except ValueError as error:
        if "BuilderConfig" in str(error) or "Config name is missing" in str(error):
            raise DataError(f"data.config={config} does not fit data.name={name}: {_short(error)}") from None
        raise DataError(f"data.name={name}{_config(config)}: {_short(error)}") from None
    return _pick(splits, split, name, key)


def _saved_to_disk(folder: Path) -> bool:
    return folder.is_dir() and any((folder / f).is_file() for f in ("dataset_dict.json", "state.json"))


def _from_disk(folder: Path, split: str, streaming: bool, key: str) -> Any:
    import datasets

    loaded = datasets.load_from_disk(str(folder))
    if isinstance(loaded, datasets.DatasetDict):
        loaded = _pick(loaded, split, str(folder), key)
    elif key != "data.split":  # one Dataset saved: it is the training split, there is no other
        raise DataError(
            f"{key}={split}: data.name={folder} holds one dataset, not splits; set {key}=null to hold out "
            "data.val_fraction of it"
        )
    # shards let a stream resume at (shard, offset) without reading what came before
    return loaded.to_iterable_dataset(num_shards=min(64, max(1, len(loaded)))) if streaming else loaded


def _pick(splits: Any, split: str, name: str, key: str) -> Any:
    if split not in splits:
        raise DataError(f"{key}={split} is not a split of data.name={name} (splits: {', '.join(splits)})")
    return splits[split]


def _config(config: str | None) -> str:
    return f" data.config={config}" if config else ""


def _short(error: BaseException) -> str:
    return " ".join(str(error).split())[:200]
