"""The enhanced encoder-decoder Transformer.

Pre-LN blocks with a final norm on each stack (or post-LN ones, conf/residual/), tied token embeddings
(encoder input, decoder input, output head), bias-free linears, SDPA attention, pluggable norm / positional
scheme / feed-forward.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from enhanced_tx.errors import ConfigError
from enhanced_tx.model.attention import AttentionSpec
from enhanced_tx.model.blocks import (
    DecoderBlock,
    EncoderBlock,
    FeedForwardFactory,
    NormFactory,
    PreNorm,
    Residual,
    normalised,
)
from enhanced_tx.model.cache import DecoderCache
from enhanced_tx.model.config_checks import check_config, check_flag, check_linear_backend
from enhanced_tx.model.cost import forward_flops
from enhanced_tx.model.linear import Linear, linear
from enhanced_tx.model.packing import Packing
from enhanced_tx.model.positional import PositionalScheme
from enhanced_tx.model.recompute import pointwise_recompute

VOCAB_MULTIPLE = 64  # embedding/head rows padded to a multiple of 64: faster GEMMs, tensor-core friendly


class EncoderDecoder(nn.Module):
    """Encoder-decoder Transformer. `vocab_size` comes from the tokenizer, the rest from the config."""

    def __init__(
        self,
        vocab_size: int,
        norm: NormFactory,
        positional: Callable[..., PositionalScheme],
        feedforward: FeedForwardFactory,
        d_model: int = 256,
        n_heads: int = 4,
        n_encoder_layers: int = 2,
        n_decoder_layers: int = 2,
        ffn_mult: int = 4,
        max_seq_len: int = 1024,
        dropout: float = 0.0,
        linear_backend: str = "auto",
        attention: AttentionSpec | None = None,
        residual: Residual | None = None,
        embed_norm: bool | str = "auto",
        embed_scale: float = 1.0,
        init_std: float = 0.02,
        scale_residual_init: bool | str = "auto",
        memory_sink: bool = False,
        recompute_pointwise: bool = True,
    ) -> None:
        super().__init__()
        check_config(vocab_size, d_model, n_heads, n_encoder_layers, n_decoder_layers, max_seq_len, dropout)
        check_linear_backend(linear_backend)
        self.vocab_size = vocab_size
        self.padded_vocab_size = VOCAB_MULTIPLE * math.ceil(vocab_size / VOCAB_MULTIPLE)
        self.d_model, self.n_heads, self.max_seq_len = d_model, n_heads, max_seq_len
        hidden = ffn_mult * d_model
        self.gradient_checkpointing = False
        # Training keeps the inputs of GELUs, norms and autocast weight copies and recomputes their outputs in
        # the backward (enhanced_tx.model.recompute): no matmul recomputed, same values, less memory.
        self.recompute_pointwise = check_flag("model.recompute_pointwise", recompute_pointwise)

        self.embed = nn.Embedding(self.padded_vocab_size, d_model)
        self.encoder_positional = positional(d_model=d_model, n_heads=n_heads, max_seq_len=max_seq_len)
        self.decoder_positional = positional(d_model=d_model, n_heads=n_heads, max_seq_len=max_seq_len)
        self.dropout = nn.Dropout(dropout)
        self.residual = residual or PreNorm()
        self.embed_scale = embed_scale  # token embeddings x this before positions (Vaswani et al.: sqrt(d_model))
        # A norm after the embeddings (BART's layernorm_embedding), one per stack; off: identities, no weights.
        embed_norm = check_flag("model.embed_norm", embed_norm, auto=self.residual.embed_norm)
        self.encoder_embed_norm = norm(d_model) if embed_norm else nn.Identity()
        self.decoder_embed_norm = norm(d_model) if embed_norm else nn.Identity()
        # A learned memory slot before every source (zero at init: a key scoring 0 with a value adding nothing),
        # so cross-attention heads have somewhere to look when the source holds nothing they need.
        self.memory_sink = nn.Parameter(torch.zeros(d_model)) if memory_sink else None
        block_args = (d_model, n_heads, hidden, dropout, norm, feedforward, attention, self.residual)
        self.encoder_layers = nn.ModuleList(EncoderBlock(*block_args) for _ in range(n_encoder_layers))
        self.decoder_layers = nn.ModuleList(DecoderBlock(*block_args) for _ in range(n_decoder_layers))
        # Pre-norm streams end with a norm; post-norm blocks already end with one.
        self.encoder_norm = norm(d_model) if self.residual.final_norm else nn.Identity()
        self.decoder_norm = norm(d_model) if self.residual.final_norm else nn.Identity()
        scale_residual = check_flag("model.scale_residual_init", scale_residual_init, self.residual.scale_residual_init)
        self._init_weights(n_encoder_layers, n_decoder_layers, init_std, scale_residual)
        self.set_linear_backend(linear_backend)

    # ---------------------------------------------------------------- construction helpers
    def _init_weights(self, n_encoder_layers: int, n_decoder_layers: int, std: float, scale_residual: bool) -> None:
        """GPT-2 init: N(0, std), and with `scale_residual` the residual output projections scaled by
        1/sqrt(residual branches of the stack)."""
        for stack, branches in (
            (self.encoder_layers, 2 * n_encoder_layers),
            (self.decoder_layers, 3 * n_decoder_layers),
        ):
            for module in stack.modules():
                if isinstance(module, nn.Linear):
                    scaled = scale_residual and getattr(module, "is_residual_projection", False)
                    nn.init.normal_(module.weight, mean=0.0, std=std / math.sqrt(branches) if scaled else std)
        nn.init.normal_(self.embed.weight, mean=0.0, std=std)

    def num_parameters(self, non_embedding: bool = False) -> int:
        """Parameter count; tied weights counted once. Non-embedding excludes token and position tables."""
        total = sum(p.numel() for p in self.parameters())
        if non_embedding:
            total -= self.embed.weight.numel()
            total -= sum(p.numel() for m in (self.encoder_positional, self.decoder_positional) for p in m.parameters())
        return total

    def set_linear_backend(self, backend: str) -> None:
        """Matmul backend of every bias-free linear and the output head: "auto" (oneDNN on CPUs, PyTorch's
        dispatch elsewhere), "default" (PyTorch's dispatch) or "onednn" (CPU matmuls through oneDNN: fp32
        training, fp32/bf16 inference). See `enhanced_tx.model.linear`."""
        check_linear_backend(backend)
        self.linear_backend = backend
        for module in self.modules():
            if isinstance(module, Linear):
                module.backend = backend

    def set_gradient_checkpointing(self, enabled: bool) -> None:
        """Recompute each block's activations in the backward pass instead of storing them."""
        self.gradient_checkpointing = enabled

    def check_lengths(self, src_len: int, tgt_len: int) -> None:
        """Fail early, naming the keys, when the data asks for longer sequences than the model allows."""
        if max(src_len, tgt_len) > self.max_seq_len:
            raise ConfigError(
                f"sequences of {src_len} source / {tgt_len} target tokens exceed model.max_seq_len="
                f"{self.max_seq_len}; raise model.max_seq_len or shorten the data lengths"
            )

    # ---------------------------------------------------------------- forward passes
    def _run(self, block: nn.Module, *args, **kwargs) -> torch.Tensor:
        if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(block, *args, use_reentrant=False, **kwargs)
        return block(*args, **kwargs)

    def _embed(self, tokens: torch.Tensor, positional: PositionalScheme, norm: nn.Module, offset: int) -> torch.Tensor:
        if offset + tokens.shape[1] > self.max_seq_len:
            raise ConfigError(
                f"a sequence of {offset + tokens.shape[1]} tokens exceeds model.max_seq_len={self.max_seq_len}; "
                "raise model.max_seq_len or pass shorter inputs"
            )
        x = self.embed(tokens)
        if self.embed_scale != 1.0:
            x = x * self.embed_scale
        return self.dropout(normalised(norm, positional.embed(x, offset)))

    def encode(
        self, src: torch.Tensor, src_mask: torch.Tensor | None = None, packing: Packing | None = None
    ) -> torch.Tensor:
        """Source tokens (B, S) -> memory (B, S, D). `src_mask` is bool (B, S), True for real tokens. With
        `packing` (of `src_mask`) the memory of the real tokens only, (N, D)."""
        key_mask = _key_mask(src_mask)
        x = self._embed(src, self.encoder_positional, self.encoder_embed_norm, 0)
        if packing is not None:
            x = packing.pack(x)
        for block in self.encoder_layers:
            x = self._run(block, x, self.encoder_positional, key_mask, packing)
        return normalised(self.encoder_norm, x)

    def decode(
        self,
        tgt: torch.Tensor,
        memory: torch.Tensor,
        src_mask: torch.Tensor | None = None,
        hidden: bool = False,
        packing: Packing | None = None,
        memory_packing: Packing | None = None,
    ) -> torch.Tensor:
        """Teacher-forced decoder over the whole target (B, T) -> logits (B, T, V_padded), or with `hidden`
        the decoder's output after its final norm (B, T, D): what the tied head (`embed.weight`) multiplies.
        `packing`: outputs at its real positions only; `memory_packing`: memory holds real tokens (N_src, D)."""
        if self.memory_sink is not None and memory_packing is not None:  # the sink joins the padded layout
            memory, memory_packing = memory_packing.unpack(memory), None
        memory, src_mask = self._with_sink(memory, src_mask)
        key_mask = _key_mask(src_mask)
        x = self._embed(tgt, self.decoder_positional, self.decoder_embed_norm, 0)
        if packing is not None:
            x = packing.pack(x)
        for block in self.decoder_layers:
            x = self._run(
                block, x, self.decoder_positional, key_mask, memory, packing=packing, memory_packing=memory_packing
            )
        return self.decoder_norm(x) if hidden else self._head(x)

    def forward(
        self,
        src: torch.Tensor,
        tgt: torch.Tensor,
        src_mask: torch.Tensor | None = None,
        hidden: bool = False,
        tgt_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(B, S), (B, T) -> logits (B, T, V_padded). Decoder position t sees target tokens <= t only. With
        `hidden` the final hidden states (B, T, D) instead, for a loss that applies the head in chunks
        (`enhanced_tx.training.chunked_loss`; through the forward, so DDP and torch.compile wrappers see it).

        With `tgt_mask` (B, T) bool, a prefix of each row (`packing.causal_prefix`), the padding-free path:
        position-wise layers run on real tokens only (sources by `src_mask`); outputs (N, V_padded) or (N, D)
        at `tgt_mask`'s positions, ordered as `labels[tgt_mask]`."""
        # Not under gradient checkpointing: its blocks keep their inputs only, and a recipe would keep more.
        recompute = self.recompute_pointwise and not self.gradient_checkpointing
        with pointwise_recompute(recompute and self.training and torch.is_grad_enabled()):
            if tgt_mask is None:
                return self.decode(tgt, self.encode(src, src_mask), src_mask, hidden=hidden)
            sources = None if src_mask is None else Packing(src_mask.bool())
            memory = self.encode(src, src_mask, sources)
            return self.decode(tgt, memory, src_mask, hidden, Packing(tgt_mask.bool()), sources)

    def _with_sink(
        self, memory: torch.Tensor, src_mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, S, D), (B, S) -> (B, 1 + S, D), (B, 1 + S) with the memory sink first (unchanged without one)."""
        if self.memory_sink is None:
            return memory, src_mask
        b = memory.shape[0]
        sink = self.memory_sink.to(memory.dtype).expand(b, 1, -1)
        mask = None if src_mask is None else torch.cat([src_mask.new_ones(b, 1), src_mask], dim=1)
        return torch.cat([sink, memory], dim=1), mask

    def _head(self, x: torch.Tensor) -> torch.Tensor:
        x = self.decoder_norm(x)
        if self.linear_backend != "default":
            return linear(x, self.embed.weight, self.linear_backend)  # tied head: (B, T, D) @ (D, V)
        return x @ self.embed.weight.t()  # tied head: (B, T, D) @ (D, V)

    # ---------------------------------------------------------------- incremental decoding
    def init_cache(self, memory: torch.Tensor, src_mask: torch.Tensor | None, max_len: int) -> DecoderCache:
        """Preallocate self-attention K/V for `max_len` target positions; project cross K/V once."""
        if max_len > self.max_seq_len:
            raise ConfigError(
                f"generating {max_len} target positions exceeds model.max_seq_len={self.max_seq_len}; "
                "lower max_new_tokens"
            )
        memory, src_mask = self._with_sink(memory, src_mask)
        b = memory.shape[0]
        hd = self.d_model // self.n_heads
        n = len(self.decoder_layers)
        shape = (n, b, self.decoder_layers[0].self_attn.n_kv_heads, max_len, hd)  # KV heads only (gqa, mqa)
        self_k = memory.new_empty(shape)
        self_v = memory.new_empty(shape)
        cross = [block.cross_attn.project_memory(memory) for block in self.decoder_layers]
        return DecoderCache(
            self_k=self_k,
            self_v=self_v,
            cross_k=torch.stack([k for k, _ in cross]),  # (L, B, KV, S, hd)
            cross_v=torch.stack([v for _, v in cross]),
            cross_mask=_key_mask(src_mask),
        )

    def decode_step(self, tokens: torch.Tensor, cache: DecoderCache) -> tuple[torch.Tensor, DecoderCache]:
        """Feed new target tokens (B, t) after `cache.offset` earlier ones -> (logits (B, t, V_padded), cache)."""
        offset = cache.offset
        x = self._embed(tokens, self.decoder_positional, self.decoder_embed_norm, offset)
        for i, block in enumerate(self.decoder_layers):
            x = block(x, self.decoder_positional, offset=offset, **cache.layer(i))
        cache.offset = offset + tokens.shape[1]
        return self._head(x), cache

    # ---------------------------------------------------------------- cost model (enhanced_tx.model.cost)
    def forward_flops(self, src_len: int, tgt_len: int) -> float:
        """Matmul FLOPs of one forward pass over one (source, target) pair (2 per multiply-add)."""
        return forward_flops(self, src_len, tgt_len)

    def flops_per_token(self, src_len: int, tgt_len: int, training: bool = True) -> float:
        """FLOPs per (source + target) token; a training step is forward + backward = 3x forward."""
        return (3.0 if training else 1.0) * self.forward_flops(src_len, tgt_len) / (src_len + tgt_len)

    def summary(self) -> str:
        total, non_emb = self.num_parameters(), self.num_parameters(non_embedding=True)
        return (
            f"EncoderDecoder: {total / 1e6:.2f}M parameters ({non_emb / 1e6:.2f}M non-embedding), d_model="
            f"{self.d_model}, heads={self.n_heads}, layers={len(self.encoder_layers)}+{len(self.decoder_layers)}, "
            f"vocab={self.vocab_size} (padded {self.padded_vocab_size})"
        )


def _key_mask(src_mask: torch.Tensor | None) -> torch.Tensor | None:
    """(B, S) bool -> (B, 1, 1, S), broadcast over heads and queries by SDPA."""
    return None if src_mask is None else src_mask[:, None, None, :].bool()
