"""What kind of output a trained run produces, read from its saved config: a continuation of the prompt (text,
sample data: print prompt + continuation) or an answer to it (pairs: print only the generated target). The
run's data class says, through `continues_source` (a bool, or a function of its settings; default True)."""

from __future__ import annotations

from collections.abc import Mapping


def continues_prompt(config: Mapping) -> bool:
    from hydra.utils import get_class

    from enhanced_tx.trusted_targets import shipped_targets

    data = config.get("data") or {}
    target = str(data.get("_target_", ""))
    if (target, False) not in shipped_targets().get("data", frozenset()):  # import only classes the project ships
        return True  # no data section or a class of no shipped option: print as a continuation (the seed's way)
    cls = get_class(target)
    rule = getattr(cls, "continues_source", True)
    return bool(rule(data)) if callable(rule) else bool(rule)


def provenance(run_dir, weights, sampler_config: Mapping, seed: int, max_new_tokens: int) -> dict:
    """What made a generation, stored with each JSONL record: run, checkpoint, sampler and its settings, seed."""
    settings = {k: v for k, v in sampler_config.items() if not str(k).startswith("_")}
    name = str(sampler_config.get("_target_", "")).rsplit(".", 1)[-1]
    return {"run": str(run_dir), "checkpoint": str(weights), "sampler": name, "sampler_settings": settings,
            "seed": seed, "max_new_tokens": max_new_tokens}  # fmt: skip
