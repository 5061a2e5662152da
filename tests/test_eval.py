"""run_eval on a tiny trained model: the numbers it writes are sacrebleu's, its records, the run's tracker,
loss/perplexity on text, and val/bleu during training agreeing with run_eval."""

from __future__ import annotations

import json
import math
from typing import ClassVar

import pytest
import sacrebleu
import torch

from enhanced_tx.data import PairsData
from enhanced_tx.evaluation import MetricSettings, corpus_scores
from enhanced_tx.tasks.evaluate import evaluate
from enhanced_tx.tasks.train import train
from enhanced_tx.tracking import read_jsonl
from enhanced_tx.tracking.logger import MetricLogger
from enhanced_tx.trusted_targets import admitted

from .conftest import TINY_TRAIN, compose_train

CONSTANT = "the cat sat on the mat"  # every training target: a tiny model learns it in ~40 steps
WORDS = ["red", "blue", "green", "big", "small", "house", "tree", "runs", "fast", "slow"]
PAIRS_TRAIN = tuple(o for o in TINY_TRAIN if not o.startswith(("data.", "trainer.max_steps", "trainer.eval_every")))


class RecordingLogger(MetricLogger):
    """A tracker backend that remembers how it was started and what it got (run id fixed)."""

    starts: ClassVar[list[dict]] = []
    logged: ClassVar[list[tuple[int, dict]]] = []
    summaries: ClassVar[list[dict]] = []
    tables: ClassVar[list[tuple[str, list, int]]] = []

    @property
    def run_id(self) -> str:
        return "recorded-run-1"

    def _backend_start(self, **kwargs) -> None:
        RecordingLogger.starts.append(kwargs)

    def _backend_log(self, metrics, step) -> None:
        RecordingLogger.logged.append((step, dict(metrics)))

    def _backend_summary(self, values) -> None:
        RecordingLogger.summaries.append(dict(values))

    def _backend_log_table(self, key, columns, rows, step) -> None:
        RecordingLogger.tables.append((key, rows, step))


def write_pairs(path, pairs) -> None:
    path.write_text("".join(json.dumps({"source": s, "target": t}) + "\n" for s, t in pairs))


def sources(n: int, seed: int) -> list[str]:
    rng = __import__("random").Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 5))) for _ in range(n)]


@pytest.fixture(scope="module")
def one_thread():
    """Two shared cores: one intra-op thread is much faster for these tiny models than two contending."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module", autouse=True)
def _recording_logger_is_trusted():
    """Evaluation rebuilds the run's logger from its saved config, which builds only shipped classes (or ones
    admitted in code, as here: the test's own class)."""
    with admitted("logger", f"{RecordingLogger.__module__}.RecordingLogger"):
        yield


@pytest.fixture(scope="module")
def trained(tmp_path_factory, one_thread):
    """A tiny run trained for 40 steps on pairs with a constant target, val/bleu at every evaluation,
    best.pt chosen by val/bleu, logged through RecordingLogger."""
    root = tmp_path_factory.mktemp("pairs_run")
    train_file = root / "train.jsonl"
    write_pairs(train_file, [(s, CONSTANT) for s in sources(64, seed=0)])
    test_file = root / "test.jsonl"  # half the references are what the model learned, half differ by a word
    write_pairs(test_file, [(s, CONSTANT if i % 2 else "the dog sat on the mat") for i, s in enumerate(sources(8, 1))])
    RecordingLogger.starts.clear()
    cfg = compose_train(
        root,
        *PAIRS_TRAIN,
        "data=pairs",
        f"data.path={train_file}",
        "data.val_fraction=0.1",
        "data.max_src_len=32",
        "data.max_tgt_len=32",
        "trainer.batch_size=16",
        "trainer.max_steps=40",
        "trainer.eval_every=10",
        "trainer.eval_generate=4",
        "trainer.monitor=val/bleu",
        "optimizer.lr=1e-2",
        "scheduler=constant",
        f"logger._target_={RecordingLogger.__module__}.RecordingLogger",
    )
    best = train(cfg)
    return {"root": root, "run": root / "run", "cfg": cfg, "best": best, "test": test_file, "train": train_file}


def eval_cfg(trained, *overrides: str):
    return compose_train(
        trained["root"] / "eval_cfg",
        f"run={trained['run']}",
        f"data.path={trained['test']}",
        "progress_bar=false",
        *overrides,
        config_name="eval",
    )


def test_run_eval_reports_sacrebleus_own_numbers_for_the_files_it_wrote(trained):
    record = evaluate(eval_cfg(trained))

    written = json.loads((trained["run"] / "eval" / "test.json").read_text())
    rows = read_jsonl(trained["run"] / "eval" / "test.jsonl")
    hypotheses, references = [r["hypothesis"] for r in rows], [r["reference"] for r in rows]
    bleu = sacrebleu.corpus_bleu(hypotheses, [references])
    chrf = sacrebleu.corpus_chrf(hypotheses, [references])
    assert written["bleu"] == pytest.approx(bleu.score, abs=1e-9)
    assert written["chrf"] == pytest.approx(chrf.score, abs=1e-9)
    assert written["chrf"] > 10 and written["bleu"] > 0  # a model that learned something: not 0 == 0
    assert written["exact_match"] == pytest.approx(100 * sum(h == r for h, r in rows_pairs(rows)) / len(rows))
    assert written["bleu_signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.")
    assert "nc:6|nw:0" in written["chrf_signature"]
    # the rows are the test file, in order, each with the model's output
    test_rows = read_jsonl(trained["test"])
    assert [(r["source"], r["reference"]) for r in rows] == [(r["source"], r["target"]) for r in test_rows]
    assert written["count"] == len(rows) == 8
    # best.pt is the first evaluation with the highest val/bleu (the fixture's trainer.monitor)
    logged = [json.loads(line) for line in (trained["run"] / "metrics.jsonl").read_text().splitlines()]
    bleu = [(r["step"], r["val/bleu"]) for r in logged if "val/bleu" in r]
    best_step = next(step for step, value in bleu if value == max(v for _, v in bleu))
    assert written["step"] == best_step and written["weights"].endswith("best.pt")
    assert written["tokens_per_s"] > 0 and written["mean_output_tokens"] > 0
    assert record["bleu"] == written["bleu"]


def rows_pairs(rows):
    return [(r["hypothesis"].strip(), r["reference"].strip()) for r in rows]


def test_run_eval_logs_to_the_training_runs_tracker_by_the_run_id_in_the_checkpoint(trained):
    RecordingLogger.starts.clear()
    RecordingLogger.logged.clear()
    RecordingLogger.summaries.clear()
    RecordingLogger.tables.clear()
    train_steps = [r["step"] for r in read_jsonl(trained["run"] / "metrics.jsonl")]

    record = evaluate(eval_cfg(trained, "name=held_out"))

    assert [s["resume_id"] for s in RecordingLogger.starts] == ["recorded-run-1"]
    (step, metrics), *rest = RecordingLogger.logged
    assert not rest and step == record["log_step"] > max(train_steps)  # W&B drops steps below the current one
    assert metrics["eval/held_out/bleu"] == record["bleu"] and metrics["eval/held_out/chrf"] == record["chrf"]
    summary = RecordingLogger.summaries[-1]
    assert summary["eval/held_out/bleu_signature"] == record["bleu_signature"]
    key, table_rows, table_step = RecordingLogger.tables[0]
    assert key == "eval/held_out/samples" and len(table_rows) == 8 and table_step == step
    # a second evaluation takes the next step; the training run's own files are untouched
    again = evaluate(eval_cfg(trained, "name=held_out_2"))
    assert again["log_step"] == record["log_step"] + 1
    assert [r["step"] for r in read_jsonl(trained["run"] / "metrics.jsonl")] == train_steps


def test_val_bleu_during_training_equals_run_eval_on_the_same_validation_pairs(trained, tmp_path):
    """Two paths to one number: the trainer's val/bleu at the last step and run_eval on those pairs."""
    data = PairsData(path=str(trained["train"]), val_fraction=0.1)
    val_pairs = data.split()[1][:4]
    val_file = tmp_path / "val4.jsonl"
    write_pairs(val_file, val_pairs)
    last = [r for r in read_jsonl(trained["run"] / "metrics.jsonl") if "val/bleu" in r][-1]
    assert last["step"] == 40

    record = evaluate(
        eval_cfg(trained, f"data.path={val_file}", "checkpoint=last", "batch_size=16", "log_to_run=false")
    )

    assert record["bleu"] == pytest.approx(last["val/bleu"], abs=1e-9)
    assert record["chrf"] == pytest.approx(last["val/chrf"], abs=1e-9)


def test_monitor_val_bleu_picks_best_pt_and_the_returned_value(trained):
    evals = [r for r in read_jsonl(trained["run"] / "metrics.jsonl") if "val/bleu" in r]
    bleus = [r["val/bleu"] for r in evals]
    assert len(bleus) == 4 and len(set(bleus)) > 1  # the metric moved, so "best" means something
    assert trained["best"] == max(bleus)
    best_step = evals[bleus.index(max(bleus))]["step"]
    from enhanced_tx.checkpoint import load_checkpoint

    state = load_checkpoint(trained["run"] / "checkpoints" / "best.pt")
    assert state["train_state"]["step"] == best_step
    assert state["train_state"]["best_monitored"] == max(bleus)
    assert json.loads((trained["run"] / "summary.json").read_text())["val/best_bleu"] == max(bleus)


def test_eval_on_text_reports_the_loss_training_reports_on_the_same_file(tmp_path, text_file, one_thread):
    """data=text: loss and perplexity over the file; on the run's own validation file they equal the
    trainer's val/loss at the last step (same windows, same weights)."""
    val_file = tmp_path / "val.txt"
    val_file.write_text(" ".join(f"Validation sentence {i} about attention." for i in range(40)))
    cfg = compose_train(
        tmp_path,
        *TINY_TRAIN,
        "data=text",
        f"data.path={text_file}",
        f"data.val_path={val_file}",
        "trainer.eval_batches=1000",
    )
    train(cfg)
    expected = [r for r in read_jsonl(tmp_path / "run" / "metrics.jsonl") if "val/loss" in r][-1]

    record = evaluate(
        compose_train(
            tmp_path / "eval_cfg",
            f"run={tmp_path / 'run'}",
            "checkpoint=last",
            "data=text",
            f"data.path={val_file}",
            "data.src_len=16",
            "data.tgt_len=16",
            "progress_bar=false",
            "log_to_run=false",
            config_name="eval",
        )
    )

    assert record["loss"] == pytest.approx(expected["val/loss"], rel=1e-5)
    assert record["perplexity"] == pytest.approx(math.exp(record["loss"]))
    written = json.loads((tmp_path / "run" / "eval" / "val.json").read_text())
    assert written["loss"] == record["loss"] and written["kind"] == "language_model"
    assert not (tmp_path / "run" / "eval" / "val.jsonl").exists()


def test_corpus_scores_match_sacrebleu_with_its_settings():
    hyps = ["The cat sat on the mat .", "a dog", "Exactly this"]
    refs = ["the cat sat on the mat.", "a dog runs", "Exactly this"]
    scores = corpus_scores(hyps, refs, MetricSettings(lowercase=True, chrf_word_order=2, bleu_tokenize="intl"))
    assert scores.bleu == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs], lowercase=True, tokenize="intl").score)
    assert scores.chrf == pytest.approx(sacrebleu.corpus_chrf(lower(hyps), [lower(refs)], word_order=2).score)
    assert scores.exact_match == pytest.approx(100 / 3)
    assert "case:lc" in scores.bleu_signature and "tok:intl" in scores.bleu_signature
    assert "nw:2" in scores.chrf_signature


def lower(texts):
    return [t.lower() for t in texts]
