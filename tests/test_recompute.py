"""Pointwise recomputation (`model.recompute_pointwise`): the same loss and gradients, fewer saved bytes, and a
marked tensor changed in place is kept, never recomputed from stale inputs."""

from __future__ import annotations

import contextlib

import pytest
import torch

from enhanced_tx.model import GeluMLP, LayerNorm, RMSNorm, SwiGLU
from enhanced_tx.model.blocks import PostNorm
from enhanced_tx.model.recompute import pointwise_recompute, recomputable
from tests.conftest import make_model


def _loss_and_grads(model, src, tgt, bf16: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        logits = model(src, tgt[:, :-1])
    loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), tgt[:, 1:].flatten())
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16"])
@pytest.mark.parametrize("post_norm", [False, True], ids=["pre_norm", "post_norm"])
@pytest.mark.parametrize(
    ("norm", "feedforward"), [(RMSNorm, GeluMLP), (LayerNorm, SwiGLU)], ids=["rms-gelu", "ln-swiglu"]
)
@pytest.mark.parametrize("positional", ["rope", "learned"])
def test_same_loss_and_gradients_bit_for_bit(bf16, post_norm, norm, feedforward, positional) -> None:
    residual = PostNorm() if post_norm else None
    model = make_model(positional, norm=norm, feedforward=feedforward, residual=residual, embed_norm=post_norm).train()
    src, tgt = torch.randint(4, 97, (3, 9)), torch.randint(4, 97, (3, 8))
    model.recompute_pointwise = False
    loss_off, grads_off = _loss_and_grads(model, src, tgt, bf16)
    model.recompute_pointwise = True
    loss_on, grads_on = _loss_and_grads(model, src, tgt, bf16)
    assert torch.equal(loss_on, loss_off)
    assert grads_on.keys() == grads_off.keys()
    for name, grad in grads_off.items():
        assert torch.equal(grads_on[name], grad), name


def _kept_bytes(model, src, tgt, bf16: bool) -> int:
    """Bytes of the distinct storages autograd keeps for the backward (an outer hook sees what is kept as is)."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    kept: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        if t.untyped_storage().data_ptr() not in params:
            kept[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), autocast:
        model(src, tgt).float().sum().backward()
    return sum(kept.values())


@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16"])
def test_the_backward_keeps_fewer_bytes(bf16) -> None:
    """fp32: at least the GELU outputs (batch x tgt+src x 4D per block) are no longer kept; bf16: at least
    the bf16 copies of the weights of the blocks' linears."""
    model = make_model("rope", d_model=64, n_heads=4).train()
    src, tgt = torch.randint(4, 97, (4, 32)), torch.randint(4, 97, (4, 32))
    model.recompute_pointwise = False
    off = _kept_bytes(model, src, tgt, bf16)
    model.recompute_pointwise = True
    on = _kept_bytes(model, src, tgt, bf16)
    gelu_outputs = 2 * 4 * 32 * 4 * 64 * 4  # 2 + 2 blocks: (enc + dec) x batch x tokens x 4D x fp32 bytes
    block_weights = sum(p.numel() for n, p in model.named_parameters() if n.endswith(".weight") and p.dim() == 2)
    block_weights -= model.embed.weight.numel()
    assert off - on >= (block_weights * 2 if bf16 else gelu_outputs)


def test_gradient_checkpointing_is_unchanged_by_it() -> None:
    model = make_model("rope").train()
    src, tgt = torch.randint(4, 97, (3, 9)), torch.randint(4, 97, (3, 8))
    model.set_gradient_checkpointing(True)
    model.recompute_pointwise = False
    _, grads_off = _loss_and_grads(model, src, tgt, False)
    model.recompute_pointwise = True
    _, grads_on = _loss_and_grads(model, src, tgt, False)
    for name, grad in grads_off.items():
        assert torch.equal(grads_on[name], grad), name


def test_a_marked_tensor_changed_in_place_is_kept_not_recomputed() -> None:
    x = torch.randn(5, requires_grad=True)
    w = torch.randn(5, requires_grad=True)
    with pointwise_recompute():
        h = x * 2
        a = recomputable(torch.sin(h), torch.sin, h)
        a.add_(1.0)  # after marking: sin(h) is no longer what `a` holds
        (a * w).sum().backward()
    assert torch.equal(w.grad, torch.sin(x.detach() * 2) + 1.0)


def test_a_marked_tensor_is_recomputed_in_the_backward() -> None:
    calls = []

    def sin(t: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return torch.sin(t)

    x = torch.randn(5, requires_grad=True)
    w = torch.randn(5, requires_grad=True)
    with pointwise_recompute():
        h = x * 2
        a = recomputable(sin(h), sin, h)
        loss = (a * w).sum()
    del a
    loss.backward()
    assert len(calls) == 2  # the forward, then the backward's recomputation
    assert torch.equal(w.grad, torch.sin(x.detach() * 2))


def test_outside_the_context_marking_is_a_no_op() -> None:
    t = torch.randn(3)
    assert recomputable(t, torch.sin, t) is t


def test_self_attention_keeps_no_storage_of_the_fused_qkv_when_q_and_k_are_rotated() -> None:
    """SDPA saves q, k and v; were v a view of the fused projection, all of qkv would stay for the backward."""
    model = make_model("rope").train()
    attn = model.encoder_layers[0].attn
    x = torch.randn(2, 7, 32, requires_grad=True)
    qkv_out = []
    hook = attn.qkv.register_forward_hook(lambda module, args, out: qkv_out.append(out.untyped_storage().data_ptr()))
    kept: set[int] = set()

    def pack(t: torch.Tensor) -> torch.Tensor:
        kept.add(t.untyped_storage().data_ptr())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = attn(x, model.encoder_positional)
    hook.remove()
    y.sum().backward()
    assert qkv_out and qkv_out[0] not in kept
