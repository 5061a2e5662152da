"""Benchmarks: our encoder-decoder against Hugging Face BART and T5 and `torch.nn.Transformer`.

`python -m enhanced_tx.bench` (`make bench`) builds every contender from a config object with random
weights, runs them in one process at identical shapes and prints absolute figures and ratios:

- `peak`: matmul peak per dtype, measured in the run (the MFU denominator)
- `train`: training tokens/s (forward + backward + AdamW), fp32 and bf16 autocast, GFLOP/s, MFU
- `generate`: greedy tokens/s with a KV cache against `BartForConditionalGeneration.generate`
- `memory`: memory after the forward pass with and without gradient checkpointing
- `levers`: one measured A/B per optimisation (GEMM backend, AdamW, masks, sync, compile, ...)

Modules: `shapes` (sizes), `peers` (contenders), `timing`, `peak`, `training`, `generation`, `memory`,
`levers`, `runner`, `goals`, `report`/`table` (output), `cli`, `machine`.
"""
