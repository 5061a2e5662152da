"""Online or offline, decided before ``wandb.init`` so that an offline run never touches the network."""

from __future__ import annotations

import netrc
import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from enhanced_tx.errors import ConfigError

MODES = ("online", "offline", "disabled")
DEFAULT_HOST = "https://api.wandb.ai"
_ALIASES = {"dryrun": "offline", "run": "online"}  # spellings WANDB_MODE also accepts


def resolve_wandb_mode(mode: str | None = None, environ: Mapping[str, str] | None = None) -> str:
    """``logger.mode`` if set, else ``WANDB_MODE``, else online exactly when an API key is configured."""
    env = os.environ if environ is None else environ
    if mode is not None:
        if mode not in MODES:
            raise ConfigError(f"logger.mode={mode} is not one of {', '.join(MODES)} (or null for auto)")
        return mode
    if env.get("WANDB_MODE"):
        chosen = _ALIASES.get(env["WANDB_MODE"], env["WANDB_MODE"])
        if chosen not in MODES:
            raise ConfigError(f"WANDB_MODE={env['WANDB_MODE']} is not one of {', '.join(MODES)}; unset it")
        return chosen
    if env.get("WANDB_DISABLED", "").lower() in ("1", "true", "yes"):
        return "disabled"
    return "online" if wandb_api_key_configured(env) else "offline"


def wandb_api_key_configured(environ: Mapping[str, str] | None = None) -> bool:
    """True when W&B would find credentials without asking: the environment or a netrc entry."""
    env = os.environ if environ is None else environ
    if env.get("WANDB_API_KEY") or env.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    path = _netrc_path(env)
    if path is None:
        return False
    try:
        entries = netrc.netrc(str(path))
    except (OSError, netrc.NetrcParseError):
        return False  # an unreadable netrc holds no key W&B could use either
    url = urlsplit(env.get("WANDB_BASE_URL") or DEFAULT_HOST)
    for host in dict.fromkeys(h for h in (url.netloc, url.hostname) if h):
        found = entries.authenticators(host)
        if found and found[2]:
            return True
    return False


def _netrc_path(env: Mapping[str, str]) -> Path | None:
    # the same search order as wandb (and curl): $NETRC, then ~/.netrc, then ~/_netrc
    if env.get("NETRC"):
        path = Path(env["NETRC"]).expanduser()
        return path if path.is_file() else None
    home = Path(env["HOME"]) if env.get("HOME") else Path.home()
    for name in (".netrc", "_netrc"):
        if (home / name).is_file():
            return home / name
    return None
