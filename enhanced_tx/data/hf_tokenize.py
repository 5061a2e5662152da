"""Tokenizing a Hugging Face dataset with `Dataset.map(batched=True)`, cached by fingerprint.

The map's fingerprint is ours: the dataset's own fingerprint, the tokenizer's, the fields and this module's
version. A second run over the same data with the same tokenizer finds the Arrow file and tokenizes nothing;
another tokenizer or other fields make another file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from enhanced_tx.data.encoding import encode_texts
from enhanced_tx.data.hf_fields import get_field
from enhanced_tx.data.tokenizers import tokenizer_fingerprint

if TYPE_CHECKING:  # transformers takes 1-2 s to import; only the annotations name it
    from transformers import PreTrainedTokenizerFast

MAP_VERSION = "hf-tokens-v1"  # bump when what `tokenize_fields` writes changes
BATCH_ROWS = 1000


def encode_fields(
    batch: Mapping[str, list], tokenizer: PreTrainedTokenizerFast, columns: Mapping[str, str], eos: Mapping[str, bool]
) -> dict[str, list[list[int]]]:
    """`{column: ids}` for one batch of rows: each field's text encoded without special tokens, EOS appended
    where `eos[column]`."""
    rows = [dict(zip(batch, values, strict=True)) for values in zip(*batch.values(), strict=True)]
    out: dict[str, list[list[int]]] = {}
    for column, field in columns.items():
        ids = encode_texts(tokenizer, [str(get_field(row, field)) for row in rows])
        out[column] = [[*x, tokenizer.eos_token_id] for x in ids] if eos[column] else ids
    return out


def tokenize_fields(
    dataset: Any,
    tokenizer: PreTrainedTokenizerFast,
    columns: Mapping[str, str],
    eos: Mapping[str, bool],
    cache_dir: Path,
    num_proc: int | None = None,
) -> Any:
    """`dataset` mapped to the token columns only (`{column: field}`), through the fingerprinted map cache
    under `cache_dir/hf/`."""
    digest = hashlib.sha256(MAP_VERSION.encode())
    for part in (
        dataset._fingerprint,
        tokenizer_fingerprint(tokenizer),
        repr(sorted(columns.items())),
        repr(sorted(eos.items())),
    ):
        digest.update(part.encode())
    fingerprint = digest.hexdigest()[:32]
    folder = Path(cache_dir).expanduser() / "hf"
    folder.mkdir(parents=True, exist_ok=True)
    return dataset.map(
        encode_fields,
        batched=True,
        batch_size=BATCH_ROWS,
        fn_kwargs={"tokenizer": tokenizer, "columns": dict(columns), "eos": dict(eos)},
        remove_columns=dataset.column_names,
        new_fingerprint=fingerprint,
        cache_file_name=str(folder / f"tokens-{fingerprint}.arrow"),
        load_from_cache_file=True,
        num_proc=num_proc,
        desc="tokenizing",
    )
