"""CPUs without bf16 hardware (an AVX2-only AMD EPYC): bf16 weights decode on every linear backend (oneDNN
cannot pack them there), `precision=bf16` warns, and the start-of-run matmul peak stays short."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

from enhanced_tx.generation.decode import generate
from enhanced_tx.generation.samplers import GreedySampler
from enhanced_tx.model import linear as linear_module
from enhanced_tx.model import linear_choice
from enhanced_tx.runtime import peak as peak_module
from enhanced_tx.training import precision as precision_module
from enhanced_tx.training.precision import BFloat16, Precision

from .test_generation import make_model


@pytest.fixture
def cache(tmp_path):
    linear_choice.set_cache_dir(tmp_path)
    yield tmp_path
    linear_choice.set_cache_dir(None)


def test_the_packable_dtypes_are_those_onednn_packs_on_this_cpu():
    def avx2_only(weight):  # what oneDNN raises for bf16 on an AVX2-only CPU
        if weight.dtype == torch.bfloat16:
            raise RuntimeError("mkldnn_reorder_linear_weight: bf16 path needs the cpu support avx512bw")
        return weight

    assert linear_module.packable_dtypes(avx2_only) == {torch.float32}
    assert linear_module.packable_dtypes(lambda weight: weight) == {torch.float32, torch.bfloat16}


@pytest.mark.parametrize("backend", ["auto", "onednn"])
def test_bf16_weights_decode_on_every_backend_and_as_on_the_default_where_onednn_cannot_pack(cache, backend):
    """On this CPU, whatever it has: the packed path where oneDNN packs bf16 (the run itself is the check there:
    it crashed on an AVX2-only CPU), F.linear and the default's very tokens where it cannot."""
    torch.manual_seed(0)
    model = make_model(vocab_size=97).eval().to(torch.bfloat16)
    src = torch.randint(3, 90, (5, 9))
    tokens = {}
    for name in ("default", backend):
        model.set_linear_backend(name)
        tokens[name] = generate(model, src, max_new_tokens=6, sampler=GreedySampler(), bos_id=1, eos_id=2)
    assert tokens[backend].shape == (5, 6)
    if torch.bfloat16 not in linear_module._PACKED_DTYPES:  # F.linear itself: the same tokens
        assert torch.equal(tokens[backend], tokens["default"])


def test_a_bf16_weight_oneDNN_cannot_pack_takes_f_linear(monkeypatch):
    monkeypatch.setattr(linear_module, "_PACKED_DTYPES", frozenset({torch.float32}))
    monkeypatch.setattr(linear_module, "_packed", lambda weight: pytest.fail("packed a bf16 weight"))
    # 2 MiB: above the size from which backend="onednn" packs (`_SMALL_WEIGHT_BYTES`), so only the dtype rule decides
    x, weight = torch.randn(5, 1, 128).bfloat16(), torch.nn.Parameter(torch.randn(8192, 128).bfloat16())
    assert weight.numel() * weight.element_size() >= linear_module._SMALL_WEIGHT_BYTES
    with torch.inference_mode(), linear_module.packed_weights():
        for _ in range(3):  # packing starts at a weight's second use
            y = linear_module.linear(x, weight, "onednn")
    assert torch.equal(y, F.linear(x, weight.detach()))


def test_bf16_warns_on_a_cpu_without_bf16_kernels_and_not_elsewhere(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(precision_module, "cpu_has_bf16_kernels", lambda: False)
    with pytest.warns(UserWarning, match="precision=fp32, or precision=auto"):
        BFloat16().check_device(cpu)
    monkeypatch.setattr(precision_module, "cpu_has_bf16_kernels", lambda: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        BFloat16().check_device(cpu)
        Precision().check_device(cpu)


@pytest.mark.parametrize("probe_seconds, expected", [(1e-7, 1024), (4e-3, 320), (10.0, 128)])
def test_the_start_of_run_peak_shrinks_its_matmul_where_a_cpu_multiplies_slowly(monkeypatch, probe_seconds, expected):
    """A 128^3 probe at 4 ms is ~1 GFLOP/s (emulated bf16): 1024^3 would take 2 s a matmul, 320^3 takes 0.06 s."""
    monkeypatch.setattr(peak_module, "_seconds", lambda fn, device: probe_seconds)
    assert peak_module.fitting_size(torch.bfloat16, 1024) == expected
