"""`python run_train.py --help`: a short application help, not Hydra's dump of the whole config."""

from __future__ import annotations

from enhanced_tx.cli import LEGACY_FLAGS

from .test_cli import ROOT, run_cli


def test_help_is_short_and_names_the_commands_the_groups_and_every_seed_flag(tmp_path):
    result = run_cli("run_train.py", "--help", tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert len(text.splitlines()) < 70 and "_target_" not in text  # not the composed config
    for command in ("python run_train.py -m ", "python run_generate.py run=", "python run_eval.py run="):
        assert command in text
    groups = {p.name for p in (ROOT / "conf").iterdir() if p.is_dir() and p.name != "hydra"}
    for group in groups:
        assert f"\n{group}: " in text, group
    for flag in LEGACY_FLAGS:
        assert f"{flag} " in text, flag
    assert "--cfg job" in text and "--hydra-help" in text
    assert not (tmp_path / "outputs").exists()
