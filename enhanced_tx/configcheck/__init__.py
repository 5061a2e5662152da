"""Config checks that run right after composition, before a run folder exists (see schema.py for what the
schema is and where it comes from)."""

from enhanced_tx.configcheck.command_line import check_command_line
from enhanced_tx.configcheck.schema import config_problems

__all__ = ["check_command_line", "config_problems"]
