"""Optimizers beyond one PyTorch class: Muon for the hidden matrices with AdamW for the rest, as one object.

`conf/optimizer/muon.yaml` builds `MuonWithAdamW` from the parameter groups of
`enhanced_tx.training.optim.parameter_groups`: groups of kind "hidden_matrices" (weights of the linear
layers) go to `torch.optim.Muon`, every other group (embeddings and the tied head, position tables, norm
gains) to `torch.optim.AdamW`. Both inner optimizers work on this object's own `param_groups` and `state`,
so the trainer's learning-rate schedule, `state_dict()` / `load_state_dict()` and gradient clipping see
one ordinary optimizer, and a resumed run continues bit-identically.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from enhanced_tx.errors import ConfigError
from enhanced_tx.training.optim import MATRICES


class MuonWithAdamW(torch.optim.Optimizer):
    """Muon (Jordan et al., 2024; `torch.optim.Muon`) on the hidden 2-D weights, AdamW on the rest.

    With `adjust_lr_fn="match_rms_adamw"` (Moonshot's scaling, the default here) Muon's update has the RMS
    of an AdamW update, so both halves share one `lr` and `weight_decay`, tuned as for AdamW.
    """

    def __init__(
        self,
        params: Iterable[dict],
        lr: float = 1e-3,
        weight_decay: float = 0.1,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_steps: int = 5,
        adjust_lr_fn: str | None = "match_rms_adamw",
        betas: tuple[float, float] = (0.9, 0.98),
        eps: float = 1e-8,
        fused: bool | None = None,
    ) -> None:
        groups = [dict(group) for group in params]
        if not all(isinstance(group, dict) and "params" in group for group in groups):
            raise ConfigError("optimizer=muon needs parameter groups; build it with training.optim.build_optimizer")
        matrices = [g for g in groups if g.get("kind") == MATRICES]
        others = [g for g in groups if g.get("kind") != MATRICES]
        if not matrices:
            raise ConfigError(
                f"optimizer=muon found no parameter group of kind {MATRICES!r} (the linear layers' weights); "
                "build it with enhanced_tx.training.optim.build_optimizer, or pick optimizer=adamw"
            )
        muon = torch.optim.Muon(
            matrices,
            lr=lr,
            weight_decay=weight_decay,
            momentum=momentum,
            nesterov=nesterov,
            ns_steps=ns_steps,
            adjust_lr_fn=adjust_lr_fn,
        )
        adamw = torch.optim.AdamW(others, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, fused=fused)
        self._n_muon_groups = len(muon.param_groups)
        self._inner = (muon, adamw)
        # The inner optimizers' group dicts become ours (the same objects); their state is then shared below.
        super().__init__([*muon.param_groups, *adamw.param_groups], defaults={})
        self._share()

    def _share(self) -> None:
        """Point both inner optimizers at this object's groups and state (after init and after a load)."""
        muon, adamw = self._inner
        muon.param_groups = self.param_groups[: self._n_muon_groups]
        adamw.param_groups = self.param_groups[self._n_muon_groups :]
        muon.state = adamw.state = self.state  # keyed by parameter: the two halves never collide

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)  # builds new group dicts and a new state: re-link the halves
        self._share()

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001, ANN201 - torch.optim.Optimizer's signature
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for inner in self._inner:
            inner.step()
        return loss
