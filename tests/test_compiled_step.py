"""generate(compile=True): the compiled decode step (`generation/compiled_step.py`) finds the eager tokens, and the
packed matmul op it calls inside the graph (`linear._packed_linear_op`) equals F.linear. Compiling takes 8-30 s a
test: those are slow; the op and the error paths are not."""

from __future__ import annotations

import contextlib
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch.profiler import profile
from torch.utils.flop_counter import FlopCounterMode

from enhanced_tx.errors import ConfigError
from enhanced_tx.generation import BeamSearch, GreedySampler, beam_search, generate
from enhanced_tx.model import linear as linear_module
from enhanced_tx.model.linear import _packed_linear_op, packed_weights

from .conftest import ATTENTION_VARIANTS, make_model


@pytest.fixture(autouse=True)
def _fresh_compiler():
    """Each test's models compile anew, so the graph counts are each test's own."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _sources(batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    src = torch.randint(4, 97, (batch, 7), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(src, dtype=torch.bool)
    mask[-1, 4:] = False  # the last source is padded
    return src, mask


def _generate(model, sampler, batch: int, compile: bool) -> torch.Tensor:
    src, mask = _sources(batch)
    return generate(model, src, mask, max_new_tokens=10, sampler=sampler, bos_id=1, eos_id=2, compile=compile)


def test_compile_needs_the_cache():
    model = make_model()
    with pytest.raises(ConfigError, match="use_cache"):
        generate(model, _sources(1)[0], max_new_tokens=3, sampler=GreedySampler(), bos_id=1, eos_id=2,
                 use_cache=False, compile=True)  # fmt: skip


def test_the_packed_op_is_f_linear_inside_packed_weights_and_exactly_f_linear_outside():
    weight = torch.nn.Parameter(torch.randn(64, 32))
    x = torch.randn(5, 32)
    with torch.inference_mode():
        assert torch.equal(_packed_linear_op(x, weight), F.linear(x, weight))  # no packed copy may be kept
        with packed_weights():
            torch.testing.assert_close(_packed_linear_op(x, weight), F.linear(x, weight), rtol=1e-5, atol=1e-5)
            assert len(linear_module._packed_cache()) == 1  # it packed
        frozen = torch.randn(64, 32)  # an inference tensor: no version to key a packed copy by
        with packed_weights():
            assert torch.equal(_packed_linear_op(x, frozen), F.linear(x, frozen))


@pytest.mark.slow
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("sampler", [GreedySampler(), BeamSearch(num_beams=3)], ids=["greedy", "beam"])
def test_the_compiled_step_finds_the_eager_tokens(sampler, batch):
    model = make_model()  # vocabulary 97, padded to 128: the mask is inside the compiled graph
    eager = _generate(model, sampler, batch, compile=False)
    assert torch.equal(_generate(model, sampler, batch, compile=True), eager)


@pytest.mark.slow
@pytest.mark.parametrize(
    "positional, attention, early_stopping",
    [
        ("t5_bias", "gqa", True),
        ("alibi", "mqa-qknorm", False),
        ("learned", "mha-qknorm", True),
        ("sinusoidal", "gqa-qknorm", False),
    ],
)
def test_compiled_beam_search_reads_through_its_lineage_and_finds_the_eager_beams(
    positional, attention, early_stopping
):
    """Every positional scheme (a position bias is the float mask of the fused attention) and head layout:
    the compiled step reorders a lineage table, not the cache, and the compiled update (both stopping rules, a
    fractional length penalty) finds the eager beams."""
    model = make_model(positional, attention=ATTENTION_VARIANTS[attention])
    sampler = BeamSearch(num_beams=3, length_penalty=0.6, early_stopping=early_stopping)
    eager = _generate(model, sampler, 2, compile=False)
    with profile(record_shapes=True) as prof:
        compiled = _generate(model, sampler, 2, compile=True)
    assert torch.equal(compiled, eager)
    selects = [event.input_shapes[0] for event in prof.events() if event.name == "aten::index_select"]
    assert selects and all(len(shape) == 2 for shape in selects), selects  # the (rows, positions) table only


@pytest.mark.slow
@pytest.mark.parametrize(
    "sampler, update_graphs",
    [(GreedySampler(), 0), (BeamSearch(num_beams=3), 1), (BeamSearch(num_beams=3, repetition_penalty=1.2), 0)],
    ids=["greedy", "beam", "beam-with-penalty"],
)
def test_the_first_batch_size_compiles_two_graphs_each_later_one_one_and_a_repeat_none(sampler, update_graphs):
    """The step's graphs, plus, for a beam search without score adjustments, one graph of its per-step update for
    every batch size (`beam_search._advance_compiled`): one graph for all steps, not one per step."""
    graphs = torch._dynamo.utils.counters["stats"]
    model, built = make_model(), []
    for batch in (1, 3, 1, 3):
        before = graphs["unique_graphs"]
        _generate(model, sampler, batch, compile=True)
        built.append(graphs["unique_graphs"] - before)
    assert built == [2 + update_graphs, 1 + update_graphs, 0, 0]


@pytest.mark.slow
def test_the_step_keeps_compiling_past_dynamos_global_recompile_limit(monkeypatch):
    """The step has its own limit (`GRAPH_LIMIT`): with the global one at 1, a second batch size still compiles
    (under the global limit it ran eagerly after 8 graphs, summed over models and batch sizes)."""
    monkeypatch.setattr(torch._dynamo.config, "recompile_limit", 1)
    graphs = torch._dynamo.utils.counters["stats"]
    model, sampler, built = make_model(), GreedySampler(), []
    for batch in (1, 2):
        before = graphs["unique_graphs"]
        compiled = _generate(model, sampler, batch, compile=True)
        built.append(graphs["unique_graphs"] - before)
        assert torch.equal(compiled, _generate(model, sampler, batch, compile=False))
    assert built == [2, 1]


@pytest.mark.slow
def test_a_call_under_a_dispatch_mode_runs_eagerly_and_later_batch_sizes_still_compile():
    """FlopCounterMode is a TorchDispatchMode: the step under it runs eagerly (the eager tokens and the eager
    FLOP count), and later calls outside it compile again (before, no later batch size built a graph)."""
    graphs = torch._dynamo.utils.counters["stats"]
    model, sampler, built = make_model(), GreedySampler(), []
    for batch, counted in ((1, False), (2, True), (3, False)):
        before = graphs["unique_graphs"]
        with FlopCounterMode(display=False) if counted else contextlib.nullcontext() as flops:
            compiled = _generate(model, sampler, batch, compile=True)
        built.append(graphs["unique_graphs"] - before)
        assert torch.equal(compiled, _generate(model, sampler, batch, compile=False))
        if counted:
            with FlopCounterMode(display=False) as eager_flops:
                _generate(model, sampler, batch, compile=False)
            assert flops.get_total_flops() == eager_flops.get_total_flops() > 0
    assert built == [2, 0, 1]


@pytest.mark.slow
def test_weights_the_eager_rule_packs_are_packed_inside_the_graph(monkeypatch):
    """backend="onednn" packs every weight above a size: with the size at 0 every decoder matmul in the graph is
    the packed op, and the beams stay the eager ones."""
    monkeypatch.setattr(linear_module, "_SMALL_WEIGHT_BYTES", 0)
    model = make_model(linear_backend="onednn")
    sampler = BeamSearch(num_beams=2)
    eager = _generate(model, sampler, 2, compile=False)
    with profile() as prof:
        compiled = _generate(model, sampler, 2, compile=True)
    assert torch.equal(compiled, eager)
    assert any(event.key == "enhanced_tx::packed_linear" for event in prof.key_averages())


def test_under_a_dispatch_mode_beam_search_updates_eagerly():
    """Dynamo cannot trace under a TorchDispatchMode (`compiled_step`): the compiled update is not used there."""
    with FlopCounterMode(display=False):
        assert beam_search._advance_compiled() is beam_search._advance
    assert beam_search._advance_compiled() is not beam_search._advance  # outside it: the compiled graph


def test_importing_the_commands_does_not_import_the_compiler():
    """Marking the compiled matmul choice a constant imports torch._dynamo (1.3 s): only a compiled step may."""
    code = "import sys, enhanced_tx.cli, enhanced_tx.tasks.generate, enhanced_tx.tasks.train; "
    code += "sys.exit('torch._dynamo' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0
