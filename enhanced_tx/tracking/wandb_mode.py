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
_FORGE_HOSTS = {"forge.coreweave.com": "api.wandb.ai"}  # wandb.sdk.lib.urls.FORGE_HOSTS, 0.31
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
    for host in _netrc_hosts(env.get("WANDB_BASE_URL")):
        found = entries.authenticators(host)
        if found and found[2]:
            return True
    return False


def _netrc_hosts(base_url: str | None) -> list[str]:
    """netrc machine names W&B may have stored a key under: the configured server, or (none configured) the
    classic api.wandb.ai and wandb's own default server (CoreWeave Forge since wandb 0.2x, whose `wandb login`
    writes `machine api.forge.coreweave.com`)."""
    urls = [base_url] if base_url else [DEFAULT_HOST, _wandb_default_url()]
    hosts: list[str] = []
    for url in filter(None, urls):
        parts = urlsplit(url)
        hosts += [h for h in (parts.netloc, parts.hostname) if h]
    for forge, api in _FORGE_HOSTS.items():  # a Forge host and the W&B API host behind it share a key
        if f"api.{forge}" in hosts or forge in hosts:
            hosts.append(api)
        if api in hosts:
            hosts.append(f"api.{forge}")
    return list(dict.fromkeys(hosts))


def _wandb_default_url() -> str | None:
    try:
        from wandb.sdk.lib.urls import DEFAULT_BASE_URL
    except (ImportError, AttributeError):  # older wandb, or a layout that moved: the classic host covers it
        return None
    return DEFAULT_BASE_URL


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
