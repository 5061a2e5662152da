"""The quality bench's plumbing: BART's inputs, our run's command and curve, and the goal verdicts."""

from __future__ import annotations

import json
import sys

import pytest

from enhanced_tx.bench.quality_report import markdown, point_at_second, text
from enhanced_tx.bench.quality_result import Curve, Outcome, Point, QualitySpec
from enhanced_tx.data.catalog_pairs import CatalogPairs
from enhanced_tx.data.tokenizers import BPETokenizer

DATA = CatalogPairs(*(f"/data/{n}.jsonl" for n in ("train", "val", "test")), manifest="/data/manifest.json")
INFO = {"task": "English -> de", "pairs": {"train": 3, "val": 1, "test": 1}}


def test_bart_sources_carry_bos_and_eos_and_labels_end_with_eos():
    from enhanced_tx.bench.quality_bart import encode

    tokenizer = BPETokenizer(vocab_size=300).build(["open the file", "Datei öffnen"] * 20)
    item = encode(tokenizer, [("open the file", "Datei öffnen")], max_len=64)[0]
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    assert item["input_ids"][0] == bos and item["input_ids"][-1] == eos
    assert item["labels"][-1] == eos and bos not in item["labels"]  # same tokens as our targets: text + EOS
    assert tokenizer.decode(item["labels"][:-1]) == "Datei öffnen"


def test_our_run_uses_the_defaults_plus_only_the_task_settings_and_the_ablation():
    from enhanced_tx.bench.quality_ours import train_command

    command = train_command(DATA, "/runs/x", QualitySpec(), 500, None, "bf16", ["residual=post_norm"])
    assert command[:3] == [sys.executable, command[1], "data=pairs"] and command[1].endswith("run_train.py")
    assert "trainer.max_steps=500" in command and command[-1] == "residual=post_norm"
    assert not [arg for arg in command if arg.startswith(("model.", "optimizer.", "scheduler.", "norm="))]
    timed = train_command(DATA, "/runs/x", QualitySpec(), 500, 90.0, "fp32", [])
    assert "trainer.budget.minutes=1.500000" in timed and "trainer.max_steps=500" not in timed


def test_our_scores_come_from_the_test_pairs_bart_is_scored_on():
    from enhanced_tx.bench.quality_ours import eval_command

    subset = "/runs/test.jsonl"  # the first --test-pairs of the split, as BART translates them
    assert f"data.path={subset}" in eval_command(DATA, "/runs/x", QualitySpec(), "bf16", subset)
    assert f"data.path={DATA.test}" in eval_command(DATA, "/runs/x", QualitySpec(), "bf16")


def test_our_curve_pairs_each_validation_with_the_training_time_of_its_step(tmp_path):
    from enhanced_tx.bench.quality_ours import read_curve

    lines = [
        {"step": 10, "perf/train_minutes": 0.5, "perf/tokens": 1000},
        {"step": 20, "perf/train_minutes": 1.0, "perf/tokens": 2000},
        {"step": 20, "val/loss": 4.0},
        {"step": 25, "val/loss": 3.5},  # the final evaluation, between two train logs
    ]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    curve = read_curve(tmp_path, "ours")
    assert [(p.step, p.seconds, p.val_loss) for p in curve.points] == [(20, 60.0, 4.0), (25, 60.0, 3.5)]
    assert curve.tokens == 2000 and curve.tokens_per_s == pytest.approx(2000 / 60)


def _outcome(name, mode, losses, chrf, seconds=100.0):
    points = [Point(step, seconds * step / 1000, loss) for step, loss in losses]
    return Outcome(
        name, mode, "bf16", Curve(name, points, tokens=1000, padded_tokens=2000, train_seconds=seconds), chrf, 1.0
    )


@pytest.mark.parametrize(
    "ours_losses, ours_chrf, ours_seconds_chrf, verdicts",
    [
        ([(500, 3.0), (1000, 2.0)], 56.0, 31.0, ["yes", "yes", "yes", "yes"]),
        ([(500, 3.5), (1000, 2.0)], 54.0, 29.0, ["NO", "yes", "NO", "NO"]),  # 54 < 1.1 x 50, 29 < 1.5 x 20
    ],
)
def test_goals_compare_against_bart(ours_losses, ours_chrf, ours_seconds_chrf, verdicts):
    outcomes = [
        _outcome("ours", "steps", ours_losses, ours_chrf),
        _outcome("bart", "steps", [(500, 3.2), (1000, 2.1)], 50.0),
        _outcome("bart", "seconds", [(300, 4.0)], 20.0),
        _outcome("ours", "seconds", [(700, 3.0)], ours_seconds_chrf),
    ]
    report = text(outcomes, QualitySpec(), INFO)
    goal_lines = report.split("goals (bf16)")[1].strip().splitlines()[1:]
    assert [line.split()[-1] for line in goal_lines] == verdicts
    assert "| ours | steps | 1000 |" in markdown(outcomes, QualitySpec(), INFO)


def test_point_at_second_takes_the_last_point_measured_by_then():
    first, second = Point(100, 10.0, 5.0), Point(200, 20.0, 4.0)
    curve = Curve("c", [first, second])
    assert point_at_second(curve, 5.0) is None
    assert point_at_second(curve, 19.0) is first and point_at_second(curve, 20.0) is second


def test_outcomes_written_by_one_process_merge_into_another_report(tmp_path):
    from enhanced_tx.bench.quality_result import outcome_from_dict

    outcomes = [
        _outcome("ours", "steps", [(500, 3.0), (1000, 2.0)], 56.0),
        _outcome("bart", "seconds", [(300, 4.0)], 20.0),
    ]
    path = tmp_path / "ours.json"
    path.write_text(json.dumps([o.as_dict() for o in outcomes]))
    back = [outcome_from_dict(r) for r in json.loads(path.read_text())]
    assert back == outcomes
    assert text(back, QualitySpec(), INFO) == text(outcomes, QualitySpec(), INFO)


def test_a_relative_chrf_goal_is_not_met_by_two_zeros():
    outcomes = [_outcome("ours", "steps", [(1000, 2.0)], 0.0), _outcome("bart", "steps", [(1000, 2.1)], 0.0)]
    goal_lines = text(outcomes, QualitySpec(), INFO).split("goals (bf16)")[1].strip().splitlines()[1:]
    assert goal_lines[-1].split()[-1] == "n/a"
