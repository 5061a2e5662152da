"""Tokenizer factories: Hydra builds one from `conf/tokenizer/*.yaml`, the run calls `build(texts)`.

Every factory returns a `transformers.PreTrainedTokenizerFast` with `<pad>`/`<s>`/`</s>`/`<unk>` set
(ids 0-3 for the tokenizers trained here) and no post-processor: encoding never adds BOS/EOS, the
datasets and the collator add them where the objective needs them.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from enhanced_tx.data.errors import DataError

if TYPE_CHECKING:  # transformers takes 1-2 s to import: the functions that build tokenizers import it
    from transformers import PreTrainedTokenizerFast

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
SPECIAL_TOKENS = [PAD, BOS, EOS, UNK]  # this order gives pad id 0
# Larger than any released tokenizer's vocabulary (Gemma's 262k); the tokenizers library aborts the whole
# process (a Rust panic, no Python error) when asked to train a table of ~1e9 entries.
MAX_VOCAB_SIZE = 1 << 20
SPECIAL_TOKENS_MAP = {"pad_token": PAD, "bos_token": BOS, "eos_token": EOS, "unk_token": UNK}


def wrap_tokenizer(tokenizer: Tokenizer) -> PreTrainedTokenizerFast:
    """Wrap a `tokenizers.Tokenizer` whose vocabulary holds the special tokens."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, **SPECIAL_TOKENS_MAP)


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerFast) -> str:
    """Hash of the full tokenizer definition (model, vocab, merges, added tokens, normalizers).

    Keys token caches: the same text tokenized by a different tokenizer must not hit the same cache.
    """
    return hashlib.sha256(tokenizer.backend_tokenizer.to_str().encode("utf-8")).hexdigest()


def _byte_level(model: models.Model, use_regex: bool) -> Tokenizer:
    tokenizer = Tokenizer(model)
    # No prefix space: decode(encode(text)) == text exactly.
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=use_regex)
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


class BPETokenizer:
    """Byte-level BPE trained on the run's training text (the default; a second or two for 1 MB)."""

    def __init__(self, vocab_size: int = 8192, min_frequency: int = 2) -> None:
        if vocab_size < 256 + len(SPECIAL_TOKENS):
            raise DataError(
                f"tokenizer.vocab_size={vocab_size} is too small for a byte-level BPE; "
                f"use at least {256 + len(SPECIAL_TOKENS)}"
            )
        if vocab_size > MAX_VOCAB_SIZE:  # checked here: the tokenizers library aborts the process instead
            raise DataError(
                f"tokenizer.vocab_size={vocab_size} is above the bound {MAX_VOCAB_SIZE}; use at most that (e.g. 32000)"
            )
        if not 0 <= min_frequency <= MAX_VOCAB_SIZE:
            raise DataError(f"tokenizer.min_frequency={min_frequency} must be between 0 and {MAX_VOCAB_SIZE}")
        self.vocab_size = vocab_size
        self.min_frequency = min_frequency

    def build(self, texts: Iterable[str]) -> PreTrainedTokenizerFast:
        tokenizer = _byte_level(models.BPE(unk_token=UNK), use_regex=True)
        trainer = trainers.BpeTrainer(
            vocab_size=self.vocab_size,
            min_frequency=self.min_frequency,
            special_tokens=SPECIAL_TOKENS,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte encodable: no <unk> ever
            show_progress=False,
        )
        tokenizer.train_from_iterator(texts, trainer=trainer)
        return wrap_tokenizer(tokenizer)


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character table, the alphabet of the ByteLevel pre-tokenizer."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


class ByteTokenizer:
    """The 256 bytes plus the specials; needs no training. Token id = 4 + byte value."""

    def build(self, texts: Iterable[str] = ()) -> PreTrainedTokenizerFast:
        vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
        vocab.update({char: len(SPECIAL_TOKENS) + b for b, char in bytes_to_unicode().items()})
        # A BPE with no merges is a byte vocabulary that the byte-level decoder turns back into text.
        return wrap_tokenizer(_byte_level(models.BPE(vocab=vocab, merges=[], unk_token=UNK), use_regex=False))


class PretrainedTokenizer:
    """Any fast Hugging Face tokenizer from a local folder (or the local HF cache)."""

    def __init__(self, name_or_path: str, local_files_only: bool = True) -> None:
        self.name_or_path = str(name_or_path)
        # Offline by default: a run must not depend on the network (set false to allow hub downloads).
        self.local_files_only = local_files_only

    def build(self, texts: Iterable[str] = ()) -> PreTrainedTokenizerFast:
        from transformers import AutoTokenizer, PreTrainedTokenizerFast

        path = Path(self.name_or_path).expanduser()
        offline = self.local_files_only or path.is_dir() or os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
        source = str(path) if path.is_dir() else self.name_or_path
        try:
            tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=False, local_files_only=offline)
        except Exception as err:  # OSError, HFValidationError, ValueError...: all mean "cannot load"
            raise DataError(
                f"tokenizer.name_or_path={self.name_or_path}: not a local tokenizer folder or cached Hugging Face "
                "tokenizer (no network here); pass a folder saved with save_pretrained "
                f"({type(err).__name__})"
            ) from None
        if not isinstance(tokenizer, PreTrainedTokenizerFast):
            raise DataError(
                f"tokenizer.name_or_path={self.name_or_path}: loads a slow tokenizer "
                f"({type(tokenizer).__name__}); pass one with a tokenizer.json (a fast tokenizer)"
            )
        add_missing_specials(tokenizer)
        return tokenizer


def add_missing_specials(tokenizer: PreTrainedTokenizerFast) -> None:
    """Give the tokenizer pad/bos/eos/unk where it lacks them (GPT-2 has no pad, T5 no bos...)."""
    missing = {key: token for key, token in SPECIAL_TOKENS_MAP.items() if getattr(tokenizer, key) is None}
    if missing:
        tokenizer.add_special_tokens(missing)


def load_saved_tokenizer(folder: str | os.PathLike) -> PreTrainedTokenizerFast:
    """The tokenizer a run saved in `folder` (save_pretrained): local files only, never the Hugging Face Hub
    (a missing folder must not become a download of a repo of that name); a missing folder or an unreadable
    file is a one-line DataError naming it. Only data is read: no tokenizer class or code it names is used."""
    from transformers import PreTrainedTokenizerFast

    folder = Path(folder)
    if not (folder / "tokenizer.json").is_file():
        raise DataError(
            f"{folder} holds no saved tokenizer (no tokenizer.json): the run folder is incomplete; copy the run's "
            "tokenizer/ folder back or use another run"
        )
    for file in sorted(folder.glob("*.json")):
        try:
            json.loads(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as error:
            raise DataError(
                f"{file} is unreadable or truncated ({type(error).__name__}: {' '.join(str(error).split())}); "
                "copy the run's tokenizer/ folder again or use another run"
            ) from None
    try:
        return PreTrainedTokenizerFast.from_pretrained(str(folder), local_files_only=True)
    except Exception as error:  # the library's many kinds of "cannot load" (OSError, ValueError, Exception)
        raise DataError(
            f"{folder}: cannot load the saved tokenizer ({type(error).__name__}: {' '.join(str(error).split())[:200]})"
        ) from None
