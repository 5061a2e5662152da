"""Job folder names that fit the file system.

A sweep job's folder is ``N_<overrides>`` (conf/hydra/default.yaml). A long command line makes that name
longer than the 255 bytes a file name may have, and Hydra fails creating it. ``short_dirname`` keeps a
name that fits unchanged and cuts a longer one at an override boundary, adding a hash of the full name so
that different jobs never share a folder.
"""

from __future__ import annotations

import hashlib

RESOLVER = "short_dirname"
MAX_BYTES = 200  # leaves room for the "N_" job-number prefix within the 255-byte limit
_HASH_CHARS = 8


def short_dirname(name: str, max_bytes: int = MAX_BYTES, item_sep: str = ",") -> str:
    """``name`` if it fits in ``max_bytes`` (UTF-8), else a prefix ending at an ``item_sep`` plus ``~HASH``."""
    name = str(name)
    encoded = name.encode("utf-8")
    if len(encoded) <= max_bytes:
        return name
    digest = hashlib.sha1(encoded).hexdigest()[:_HASH_CHARS]
    room = max_bytes - len(digest) - 1
    prefix = encoded[:room].decode("utf-8", errors="ignore")
    if item_sep in prefix:  # end at a whole override when there is one
        prefix = prefix[: prefix.rindex(item_sep)]
    return f"{prefix}~{digest}"


def register_resolvers() -> None:
    """Register ``${short_dirname:...}`` with OmegaConf (idempotent); called when enhanced_tx.cli is imported."""
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver(RESOLVER):
        OmegaConf.register_new_resolver(RESOLVER, lambda name: short_dirname(name))
