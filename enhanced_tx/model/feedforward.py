"""Position-wise feed-forward layers, built as `feedforward(d_model, hidden, dropout)` by a factory."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from enhanced_tx.model.linear import Linear
from enhanced_tx.model.recompute import recomputable


class GeluMLP(nn.Module):
    """Linear -> GELU -> Linear, bias-free."""

    def __init__(self, d_model: int, hidden: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.up = Linear(d_model, hidden, bias=False)
        self.down = Linear(hidden, d_model, bias=False)
        self.down.is_residual_projection = True  # scaled init, see EncoderDecoder._init_weights
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.up(x)
        return self.dropout(self.down(recomputable(F.gelu(h), F.gelu, h)))  # the down matmul's input: not kept


class SwiGLU(nn.Module):
    """SiLU-gated linear unit (Shazeer, 2020), gate and up projections fused into one matrix.

    The hidden width is 2/3 of the GELU width, rounded up to a multiple of 64, so that three matrices hold
    about as many parameters as GELU's two and ablations compare like with like.
    """

    def __init__(self, d_model: int, hidden: int, dropout: float = 0.0) -> None:
        super().__init__()
        hidden = 64 * ((2 * hidden // 3 + 63) // 64)
        self.hidden = hidden
        self.gate_up = Linear(d_model, 2 * hidden, bias=False)
        self.down = Linear(hidden, d_model, bias=False)
        self.down.is_residual_projection = True
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.dropout(self.down(recomputable(_swiglu(gate, up), _swiglu, gate, up)))


def _swiglu(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    return F.silu(gate) * up
