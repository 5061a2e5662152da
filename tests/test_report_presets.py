"""The science presets compose, sweep what they say, and hand the report its settings (``report:`` block)."""

from __future__ import annotations

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from enhanced_tx.tracking.report_options import options_for
from enhanced_tx.tracking.sweep_reader import read_sweep
from tests.conftest import CONF_DIR
from tests.test_report import make_job


def preset(name: str):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={name}"], return_hydra_config=True)
    params = {k: str(v).split(",") for k, v in cfg.hydra.sweeper.params.items()}
    return cfg, params


def test_tuned_ablation_crosses_arms_with_a_log_spaced_lr_grid_at_one_budget():
    cfg, params = preset("tuned_ablation")
    rates = [float(v) for v in params["optimizer.lr"]]
    assert len(rates) >= 3
    ratios = [b / a for a, b in zip(rates, rates[1:], strict=False)]
    assert all(r > 1 for r in ratios) and max(ratios) / min(ratios) < 1.5  # log spaced
    assert len(params["seed"]) >= 2 and cfg.trainer.budget.tokens and cfg.trainer.max_steps is None
    assert cfg.report.tune == "optimizer.lr"


def test_scaling_tiny_sweeps_widths_below_tiny_and_names_the_scale_key():
    cfg, params = preset("scaling_tiny")
    tiny = OmegaConf.load(f"{CONF_DIR}/model/tiny.yaml").d_model
    widths = [int(v) for v in params["model.d_model"]]
    assert len(widths) >= 4 and max(widths) < tiny  # 4+ points: the 3-parameter fit has standard errors
    assert all(w % cfg.model.n_heads == 0 for w in widths)
    assert list(cfg.report.scale) == ["model.d_model"]
    # 2.4M tokens in all ran in minutes on the 2 shared cores (README); the issue allows 30
    assert len(widths) * len(params["feedforward"]) * cfg.trainer.budget.tokens <= 2.5e6


def test_the_report_reads_the_block_and_the_command_line_wins(tmp_path):
    folder = make_job(tmp_path, 0, {"norm": "a"}, [2.0])
    (folder / "config.resolved.yaml").write_text("seed: 0\nreport:\n  tune: optimizer.lr\n  scale: [model.d_model]\n")
    sweep = read_sweep(tmp_path)
    assert options_for(sweep).tune == "optimizer.lr" and options_for(sweep).scale == ("model.d_model",)
    assert options_for(sweep, tune="trainer.warmup").tune == "trainer.warmup"
