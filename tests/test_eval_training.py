"""Trainer-side features for trustworthy numbers: label smoothing, token-budget batches, warm start
(trainer.init_from) and its errors, and the checks on eval_generate / monitor."""

from __future__ import annotations

import json
from functools import partial

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate

from enhanced_tx.checkpoint import CheckpointError, load_checkpoint
from enhanced_tx.cli import guarded
from enhanced_tx.data import IGNORE_INDEX, collate
from enhanced_tx.errors import EnhancedTxError
from enhanced_tx.tasks.train import train
from enhanced_tx.training import Precision, Trainer, TrainingParts
from enhanced_tx.training.batches import MapStyleBatches, epoch_sampler

from .conftest import TINY_TRAIN, compose_train, make_model

PAIRS_TRAIN = tuple(o for o in TINY_TRAIN if not o.startswith("data."))


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def pairs_file(tmp_path):
    """Pairs of very different lengths, so token budgets make batches of different sizes."""
    path = tmp_path / "pairs.jsonl"
    lines = []
    for i in range(60):
        words = [f"w{i % 7}"] * (1 + i % 9)
        lines.append(json.dumps({"source": " ".join(words), "target": " ".join(reversed(words)) + "."}))
    path.write_text("\n".join(lines) + "\n")
    return path


def pairs_cfg(tmp_path, pairs_file, *overrides):
    return compose_train(
        tmp_path,
        *PAIRS_TRAIN,
        "data=pairs",
        f"data.path={pairs_file}",
        "data.max_src_len=32",
        "data.max_tgt_len=32",
        *overrides,
    )


# ---------------------------------------------------------------------------------------- label smoothing


def one_batch(vocab_size: int = 97):
    generator = torch.Generator().manual_seed(0)
    items = [
        {
            "src": torch.randint(4, vocab_size, (n,), generator=generator),
            "tgt": torch.randint(4, vocab_size, (m,), generator=generator),
        }
        for n, m in [(5, 7), (3, 2), (6, 4)]
    ]
    return collate(items, pad_id=0, bos_id=1)


def step_parts(model, tmp_path) -> TrainingParts:
    """What `Trainer._optimizer_step` reads of the parts (one step on the CPU, no data set)."""
    return TrainingParts(model=model, optimizer_factory=None, schedule=None, precision=Precision(), train_set=None,
                         val_set=None, collator=None, logger=None, run_dir=tmp_path,
                         device=torch.device("cpu"))  # fmt: skip


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
def test_label_smoothing_trains_on_the_loss_f_cross_entropy_gives(smoothing, tmp_path):
    """The step's loss is F.cross_entropy(label_smoothing=...) of the real vocabulary's logits: the softmax never
    normalises over the rows the head is padded with, and the smoothing mass goes to tokens that exist."""
    model = make_model("rope", vocab_size=97)  # 128 logits, 31 of them padding
    batch = one_batch()
    with torch.no_grad():
        logits = model(batch.src, batch.tgt_in, batch.src_mask)
    labels = batch.labels.flatten()
    real = logits[..., :97].flatten(0, 1)
    expected = F.cross_entropy(real, labels, ignore_index=IGNORE_INDEX, label_smoothing=smoothing)
    trainer = Trainer(label_smoothing=smoothing, progress_bar=False)
    parts = step_parts(model, tmp_path)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)

    loss_sum, targets, *_ = trainer._optimizer_step(model, model, optimizer, None, parts, iter([batch]))

    assert targets == int((batch.labels != IGNORE_INDEX).sum())
    assert loss_sum / targets == pytest.approx(float(expected), rel=1e-6)
    # a softmax (and smoothing) over the padded rows as well would be another number
    padded = F.cross_entropy(logits.flatten(0, 1), labels, ignore_index=IGNORE_INDEX, label_smoothing=smoothing)
    assert loss_sum / targets != pytest.approx(float(padded), rel=1e-4)


def test_z_loss_adds_its_coefficient_times_the_mean_squared_log_partition(tmp_path):
    """trainer.z_loss=c trains on CE + c * mean(log Z^2) over the targets (Z over the real vocabulary), reports
    that share as z_loss_sum, and the term reaches the gradient (the update differs from the plain one)."""
    batch, coefficient = one_batch(), 1e-2
    reference = make_model("rope", vocab_size=97)
    with torch.no_grad():
        real = reference(batch.src, batch.tgt_in, batch.src_mask)[..., :97].flatten(0, 1)
    labels = batch.labels.flatten()
    kept = labels != IGNORE_INDEX
    ce = F.cross_entropy(real, labels, ignore_index=IGNORE_INDEX)
    z_mean = torch.logsumexp(real[kept], dim=-1).square().mean()
    results, models = {}, {}
    for c in (0.0, coefficient):
        model = make_model("rope", vocab_size=97)  # the same weights as the reference
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        trainer = Trainer(z_loss=c, progress_bar=False)
        results[c] = trainer._optimizer_step(model, model, optimizer, None, step_parts(model, tmp_path), iter([batch]))
        models[c] = model

    plain, with_z = results[0.0], results[coefficient]
    assert plain.loss_sum / plain.targets == pytest.approx(float(ce), rel=1e-6) and plain.z_loss_sum == 0.0
    assert with_z.loss_sum / with_z.targets == pytest.approx(float(ce + coefficient * z_mean), rel=1e-6)
    assert with_z.z_loss_sum / with_z.targets == pytest.approx(float(coefficient * z_mean), rel=1e-6)
    assert float(coefficient * z_mean) > 1e-3  # a difference the approx checks above can see
    a, b = models[0.0].state_dict(), models[coefficient].state_dict()
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_z_loss_comes_from_the_trainer_config_and_is_logged_when_on(tmp_path):
    from .test_training import copy_parts, quiet_trainer

    assert instantiate(compose_train(tmp_path).trainer).z_loss == 0.0
    assert instantiate(compose_train(tmp_path, "trainer.z_loss=1e-4").trainer).z_loss == 1e-4
    with pytest.raises(Exception, match=r"trainer.z_loss=-0.1 must be >= 0"):  # via Hydra
        instantiate(compose_train(tmp_path, "trainer.z_loss=-0.1").trainer)
    for c, folder in ((0.0, tmp_path / "off"), (1e-3, tmp_path / "on")):
        quiet_trainer(max_steps=2, eval_every=2, z_loss=c).fit(copy_parts(folder))
    rows = {
        name: [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        for name in ("off", "on")
    }
    assert not any("train/z_loss" in r for r in rows["off"])
    logged = [r for r in rows["on"] if "train/loss" in r]
    assert len(logged) == 2 and all(0 < r["train/z_loss"] < r["train/loss"] for r in logged)


def test_label_smoothing_comes_from_the_trainer_config(tmp_path):
    assert instantiate(compose_train(tmp_path).trainer).label_smoothing == 0.0
    assert instantiate(compose_train(tmp_path, "trainer.label_smoothing=0.1").trainer).label_smoothing == 0.1
    with pytest.raises(Exception, match=r"trainer.label_smoothing=1.5 must be in \[0, 1\)"):  # via Hydra
        instantiate(compose_train(tmp_path, "trainer.label_smoothing=1.5").trainer)


# ---------------------------------------------------------------------------------------- token budgets


def recorded_batches(monkeypatch):
    """The micro-batches the trainer takes from its (default) batch source."""
    seen = []
    original = MapStyleBatches.__iter__

    def recording(self):
        for batch in original(self):
            seen.append(batch)
            yield batch

    monkeypatch.setattr(MapStyleBatches, "__iter__", recording)
    return seen


@pytest.mark.parametrize("budget", [40, 90])
def test_max_tokens_per_batch_batches_respect_the_token_budget(budget, tmp_path, pairs_file, monkeypatch):
    seen = recorded_batches(monkeypatch)
    train(pairs_cfg(tmp_path, pairs_file, f"data.max_tokens_per_batch={budget}", "trainer.batch_size=16"))

    assert len(seen) == 6  # one per step
    for batch in seen:
        # source and target are padded separately: the padded size is items x (longest source + longest target)
        padded = int(batch.src_mask.sum(1).max()) + int((batch.labels != IGNORE_INDEX).sum(1).max())
        assert len(batch) * padded <= budget or len(batch) == 1  # a lone item longer than the budget
        assert int(batch.num_tokens) <= max(budget, padded)
        assert len(batch) <= 16
    sizes = {len(b) for b in seen}
    assert len(sizes) > 1  # batch sizes follow lengths, not batch_size


def test_validation_batches_respect_the_token_budget_in_order(tmp_path, pairs_file, monkeypatch):
    import enhanced_tx.training.evaluator as trainer_module

    made = []

    class RecordingSampler(trainer_module.EpochBatchSampler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(trainer_module, "EpochBatchSampler", RecordingSampler)
    train(pairs_cfg(tmp_path, pairs_file, "data.max_tokens_per_batch=60", "trainer.batch_size=16"))
    validation = [s for s in made if not s.shuffle]
    assert validation and all(s.max_tokens == 60 for s in validation)
    batches = list(validation[-1])
    assert [i for b in batches for i in b] == list(range(validation[-1].n))  # every item once, in order
    for b in batches:
        padded = int(validation[-1].length_parts[b].max(0).sum())
        assert len(b) * padded <= 60 or len(b) == 1


def test_without_a_token_budget_batches_hold_batch_size_items(tmp_path, pairs_file, monkeypatch):
    seen = recorded_batches(monkeypatch)
    train(pairs_cfg(tmp_path, pairs_file, "trainer.batch_size=8"))
    assert sum(len(b) == 8 for b in seen) >= 5 and any(int(b.num_tokens) > 40 for b in seen)


def test_a_token_budget_on_data_without_lengths_is_a_clear_error(tmp_path, text_file):
    with pytest.raises(EnhancedTxError, match="data.max_tokens_per_batch needs per-item lengths"):
        epoch_sampler(list(range(10)), 4, seed=0, epoch=0, max_tokens=100)
    with pytest.raises(Exception, match="max_tokens_per_batch=0 must be >= 1"):
        instantiate(compose_train(tmp_path, "data=pairs", "data.path=x.jsonl", "data.max_tokens_per_batch=0").data)


# ---------------------------------------------------------------------------------------- warm start


@pytest.fixture
def source_run(tmp_path, pairs_file):
    train(pairs_cfg(tmp_path / "source", pairs_file))
    return tmp_path / "source" / "run"


def test_init_from_loads_the_weights_and_starts_a_fresh_optimizer_and_step(
    tmp_path, pairs_file, source_run, monkeypatch
):
    first_step = {}
    original = Trainer._optimizer_step

    def recording(self, forward, model, optimizer, scaler, parts, batches, *rest):
        if not first_step:
            first_step["params"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
            first_step["optimizer_state"] = dict(optimizer.state)
            first_step["lr"] = optimizer.param_groups[0]["lr"]
        return original(self, forward, model, optimizer, scaler, parts, batches, *rest)

    monkeypatch.setattr(Trainer, "_optimizer_step", recording)
    train(pairs_cfg(tmp_path / "warm", pairs_file, f"trainer.init_from={source_run}"))

    source = load_checkpoint(source_run / "checkpoints" / "best.pt")
    assert source["train_state"]["step"] == 6 and source["optimizer"]["state"]  # a trained source
    assert first_step["params"].keys() == source["model"].keys()
    for name, tensor in source["model"].items():
        assert torch.equal(first_step["params"][name], tensor), name
    assert first_step["optimizer_state"] == {}  # a fresh optimizer: no moments, no step counts
    warm = tmp_path / "warm" / "run"
    steps = [json.loads(line)["step"] for line in (warm / "metrics.jsonl").read_text().splitlines()]
    assert min(steps) == 2 and max(steps) == 6  # counting from 0 again (log_every=2), not from the source's 6
    assert load_checkpoint(warm / "checkpoints" / "last.pt")["train_state"]["step"] == 6
    # the schedule restarts too: the first step's lr is the warmup's start, as in a fresh run
    fresh_first = first_lr_of_a_fresh_run(tmp_path / "fresh", pairs_file, monkeypatch, original)
    assert first_step["lr"] == fresh_first
    # the source's tokenizer is reused: the weights index its ids
    assert (warm / "tokenizer" / "tokenizer.json").read_text() == (
        source_run / "tokenizer" / "tokenizer.json"
    ).read_text()


def first_lr_of_a_fresh_run(tmp_path, pairs_file, monkeypatch, original):
    lrs = []

    def recording(self, forward, model, optimizer, scaler, parts, batches, *rest):
        lrs.append(optimizer.param_groups[0]["lr"])
        return original(self, forward, model, optimizer, scaler, parts, batches, *rest)

    monkeypatch.setattr(Trainer, "_optimizer_step", recording)
    train(pairs_cfg(tmp_path, pairs_file, "trainer.max_steps=1"))
    return lrs[0]


def test_init_from_another_architecture_is_a_clear_one_line_error(tmp_path, pairs_file, source_run, capsys):
    cfg = pairs_cfg(tmp_path / "bigger", pairs_file, f"trainer.init_from={source_run}", "model.d_model=64")
    with pytest.raises(CheckpointError) as error:
        train(cfg)
    message = str(error.value)
    assert f"trainer.init_from={source_run} does not fit this model" in message
    assert "has shape [" in message and "[320, 32] in the file and [320, 64] in the model" in message

    with pytest.raises(SystemExit) as exit_info:
        guarded(train)(cfg)
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: trainer.init_from={source_run} does not fit this model")


def test_init_from_a_missing_path_is_a_clear_error(tmp_path, pairs_file):
    with pytest.raises(CheckpointError, match=r"trainer.init_from=.*nowhere does not exist; pass a run folder"):
        train(pairs_cfg(tmp_path, pairs_file, f"trainer.init_from={tmp_path / 'nowhere'}"))


def test_resume_wins_over_init_from(tmp_path, pairs_file, source_run, monkeypatch):
    """A warm-started run that crashed resumes as itself (its checkpoint), not from the source weights."""
    cfg = partial(pairs_cfg, tmp_path / "warm", pairs_file, f"trainer.init_from={source_run}", "trainer.eval_every=3")
    original = Trainer._optimizer_step
    calls = []

    def crash_at_step_4(self, *args):
        calls.append(1)
        if len(calls) == 4:
            raise RuntimeError("simulated crash")
        return original(self, *args)

    monkeypatch.setattr(Trainer, "_optimizer_step", crash_at_step_4)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(cfg())
    saved = load_checkpoint(tmp_path / "warm" / "run" / "checkpoints" / "last.pt")
    assert saved["train_state"]["step"] == 3
    seen = {}

    def recording(self, forward, model, optimizer, scaler, parts, batches, *rest):
        seen.setdefault("params", {k: v.detach().clone() for k, v in model.state_dict().items()})
        seen.setdefault("optimizer_state", len(optimizer.state))
        return original(self, forward, model, optimizer, scaler, parts, batches, *rest)

    monkeypatch.setattr(Trainer, "_optimizer_step", recording)
    train(cfg("trainer.resume=auto"))
    assert all(torch.equal(seen["params"][k], v) for k, v in saved["model"].items())
    assert seen["optimizer_state"] > 0


# ---------------------------------------------------------------------------------------- eval_generate, monitor


def test_monitor_and_eval_generate_are_checked_up_front(tmp_path, text_file):
    with pytest.raises(Exception, match="trainer.monitor=val/bleu needs trainer.eval_generate > 0"):
        instantiate(compose_train(tmp_path, "trainer.monitor=val/bleu").trainer)
    with pytest.raises(Exception, match="trainer.monitor=val/acc must be one of val/loss, val/bleu, val/chrf"):
        instantiate(compose_train(tmp_path, "trainer.monitor=val/acc").trainer)
    cfg = compose_train(tmp_path, *TINY_TRAIN, "data=text", f"data.path={text_file}", "trainer.eval_generate=4")
    with pytest.raises(EnhancedTxError, match="trainer.eval_generate=4 needs reference translations: use data=pairs"):
        train(cfg)
