"""The test session keeps its hands off the user's machine-wide state: its cache and its cores."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from enhanced_tx.data.cache import default_cache_dir
from enhanced_tx.model.linear_choice import cache_file


def test_the_per_machine_cache_is_a_folder_of_the_test_process_not_the_users():
    folder = Path(os.environ["ENHANCED_TX_CACHE"]).resolve()
    assert folder.name.startswith("enhanced_tx-test-cache-") and folder != (Path.home() / ".cache" / "enhanced_tx")
    for path in (default_cache_dir(), cache_file().parent):  # the corpus and tokens, the measured choices
        assert path.resolve() == folder


def test_workers_together_use_no_more_threads_than_there_are_cores():
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers <= 1:
        pytest.skip("one test process: torch's own thread count")
    assert workers * torch.get_num_threads() <= max(workers, len(os.sched_getaffinity(0)))
