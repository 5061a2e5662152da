"""Shared test helpers: small models, deterministic seeds, offline W&B."""

from __future__ import annotations

import atexit
import math
import os
import shutil
import tempfile
from functools import partial

import pytest
import torch

from enhanced_tx.model import (
    ALiBi,
    AttentionSpec,
    EncoderDecoder,
    GeluMLP,
    LayerNorm,
    LearnedPositions,
    NoPositions,
    RMSNorm,
    RotaryEmbedding,
    SinusoidalPositions,
    SwiGLU,
    T5RelativeBias,
    linear_choice,
)

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _share_the_cores_among_workers() -> None:
    """Give each pytest-xdist worker its share of the cores, and its subprocesses the same share.

    Two workers each running torch's default of one thread per core oversubscribe the machine, and OpenMP's
    spinning threads then wait on each other: on 2 cores `make test` took 314 s that way and 186 s with one
    thread a worker (2026-12-08, AVX2 EPYC); one learning test went from 44 s to 5 s. An explicit
    OMP_NUM_THREADS is left as the user set it.
    """
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers <= 1 or "OMP_NUM_THREADS" in os.environ:
        return
    share = max(1, len(os.sched_getaffinity(0)) // workers)
    os.environ["OMP_NUM_THREADS"] = str(share)  # inherited by the commands tests run as subprocesses
    torch.set_num_threads(share)


_share_the_cores_among_workers()


def _a_cache_of_the_tests_own() -> None:
    """Point the per-machine cache (built-in corpus, token files, linear-backend and precision choices, matmul
    peaks) at a fresh folder of this test process, removed at exit.

    In the user's cache, choices timed while another worker shared the cores would stay there and steer the
    user's later runs (one kept MKL for a weight that packed oneDNN, timed alone, runs 1.3x faster); and a
    user's cache, or the folder ENHANCED_TX_CACHE names, must not decide what a test sees.
    """
    folder = tempfile.mkdtemp(prefix="enhanced_tx-test-cache-")
    os.environ["ENHANCED_TX_CACHE"] = folder  # inherited by the commands tests run as subprocesses
    atexit.register(shutil.rmtree, folder, ignore_errors=True)


_a_cache_of_the_tests_own()


@pytest.fixture(autouse=True)
def _choices_saved_however_busy_the_cores(monkeypatch):
    """Tests run beside another worker, so every measurement is "busy"; the tests of the cache file need it
    written. The tests of the busy rule itself set BUSY_CPUS back and fake the meter (`fake_contention`)."""
    monkeypatch.setattr(linear_choice, "BUSY_CPUS", math.inf)


def fake_contention(other_cpus: float | None) -> type:
    """A stand-in for `runtime.contention.Contention` that reads `other_cpus`, whatever the machine did."""

    class Meter:
        def __enter__(self) -> Meter:
            self.other_cpus = other_cpus
            return self

        def __exit__(self, *exc: object) -> None:
            pass

    return Meter


POSITIONAL_SCHEMES = {
    "rope": RotaryEmbedding,
    "sinusoidal": SinusoidalPositions,
    "learned": LearnedPositions,
    "none": NoPositions,
    "t5_bias": T5RelativeBias,
    "alibi": ALiBi,
}


def make_model(
    positional: str = "rope", norm=RMSNorm, feedforward=GeluMLP, vocab_size: int = 97, seed: int = 0, **kwargs
) -> EncoderDecoder:
    torch.manual_seed(seed)
    config = dict(d_model=32, n_heads=4, n_encoder_layers=2, n_decoder_layers=2, max_seq_len=64)
    config.update(kwargs)
    model = EncoderDecoder(
        vocab_size,
        norm=partial(norm),
        positional=partial(POSITIONAL_SCHEMES[positional]),
        feedforward=partial(feedforward),
        **config,
    )
    return model.eval()


@pytest.fixture(params=list(POSITIONAL_SCHEMES))
def positional(request) -> str:
    return request.param


# conf/attention/ options at the test models' 4 heads: n_kv_heads None = mha, 2 = gqa, 1 = mqa; each +-qk_norm
ATTENTION_VARIANTS = {
    f"{name}{'-qknorm' if qk_norm else ''}": AttentionSpec(n_kv_heads=kv, qk_norm=qk_norm)
    for name, kv in (("mha", None), ("gqa", 2), ("mqa", 1))
    for qk_norm in (False, True)
}


@pytest.fixture(params=list(ATTENTION_VARIANTS))
def attention(request) -> AttentionSpec:
    return ATTENTION_VARIANTS[request.param]


@pytest.fixture(params=[(RMSNorm, GeluMLP), (LayerNorm, SwiGLU)], ids=["rmsnorm-gelu", "layernorm-swiglu"])
def variant(request):
    return request.param


CONF_DIR = str((__import__("pathlib").Path(__file__).parent.parent / "conf").resolve())


def compose_train(tmp_path, *overrides: str, config_name: str = "train"):
    """Compose the real config as `run_train.py` would (Hydra's compose API), outputs under tmp_path.

    Hydra's runtime config is registered so `hydra.runtime.choices` works, then removed from the job
    config, as under @hydra.main.
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(
            config_name,
            overrides=[
                f"paths.output_dir={tmp_path / 'run'}",
                f"paths.cache_dir={tmp_path / 'cache'}",
                f"hydra.runtime.output_dir={tmp_path / 'run'}",
                *overrides,
            ],
            return_hydra_config=True,
        )
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


TINY_TRAIN = (
    "model.d_model=32",
    "model.n_heads=4",
    "model.n_encoder_layers=1",
    "model.n_decoder_layers=1",
    "model.max_seq_len=64",
    "tokenizer=byte",
    "data.src_len=16",
    "data.tgt_len=16",
    "trainer.batch_size=8",
    "trainer.max_steps=6",
    "trainer.eval_every=3",
    "trainer.eval_batches=2",
    "trainer.log_every=2",
    "trainer.progress_bar=false",
    "trainer.peak_flops=1e12",
    "trainer.sample_max_new_tokens=4",
    "logger=none",
)


@pytest.fixture
def text_file(tmp_path):
    """A small English text file for the continuation objective."""
    path = tmp_path / "corpus.txt"
    sentences = [
        "The quick brown fox jumps over the lazy dog.",
        "A transformer maps a source sequence to a target sequence.",
        "Attention lets every position look at every other position.",
        "Checkpoints hold the full training state for an exact resume.",
    ]
    path.write_text("\n".join(sentences[i % 4] + f" Line {i}." for i in range(400)))
    return path
