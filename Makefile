PYTHON ?= python
# torch is installed first, pinned, where none is importable: a plain `torch` requirement would pull
# whatever the index serves (on public PyPI for Linux that is the multi-GB CUDA build). For the CPU build
# from PyPI's Linux index: make install TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_VERSION ?= 2.13.0
TORCH_INDEX ?=
# import names of setup.cfg's requirements and the dev extra: all present means nothing to install
DEPENDENCIES = hydra omegaconf transformers tokenizers safetensors wandb tqdm numpy yaml matplotlib sacrebleu \
	scipy markdown_it pydantic datasets \
	hydra_plugins.hydra_optuna_sweeper hydra_plugins.hydra_joblib_launcher hydra_plugins.hydra_submitit_launcher \
	pytest xdist ruff
SWEEP ?= latest
NPROC ?= 2
# pytest-xdist workers for `make test` (1.5x on 2 cores: 217 against 313 s on 2026-12-07); 0 runs in one process.
# tests/conftest.py gives each worker its share of the cores (one thread each here: 210-233 against 314 s).
# test-all stays in one process: its torchrun tests spawn two training processes each (2 cores already).
TEST_WORKERS ?= 2

.PHONY: install train train-ddp train-fsdp convert generate eval test test-all lint bench bench-quality report clean

# Installs only what is missing: with everything importable from this checkout, no network is needed.
install:
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install "torch==$(TORCH_VERSION)" \
		$(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	@$(PYTHON) -c "import importlib.util as u, sys; sys.exit(any(u.find_spec(m) is None for m in '$(DEPENDENCIES)'.split()))" \
		2>/dev/null || $(PYTHON) -m pip install -q -e ".[dev]"
	@$(PYTHON) -c "import sys; sys.path.pop(0); import enhanced_tx, pathlib; \
		sys.exit(pathlib.Path(enhanced_tx.__file__).parent != pathlib.Path('enhanced_tx').resolve())" 2>/dev/null \
		|| $(PYTHON) -m pip install -q --no-deps -e .

train: install
	$(PYTHON) run_train.py $(ARGS)
	$(PYTHON) run_generate.py run=latest prompt="The transformer architecture is" max_new_tokens=60

train-ddp: install
	torchrun --standalone --nproc_per_node=$(NPROC) run_train.py trainer.strategy=ddp $(ARGS)

train-fsdp: install
	torchrun --standalone --nproc_per_node=$(NPROC) run_train.py trainer.strategy=fsdp precision=bf16 $(ARGS)

convert: install
	$(PYTHON) -m enhanced_tx.training.convert $(RUN) $(ARGS)

generate: install
	$(PYTHON) run_generate.py run=latest $(ARGS)

eval: install
	$(PYTHON) run_eval.py $(ARGS)

test: install
	$(PYTHON) -m pytest -m "not slow" -q -n $(TEST_WORKERS) $(ARGS)

test-all: install
	$(PYTHON) -m pytest -q $(ARGS)

lint: install
	$(PYTHON) -m ruff check enhanced_tx tests benchmarks run_train.py run_generate.py run_eval.py

bench: install
	$(PYTHON) -m enhanced_tx.bench $(ARGS)

# Our defaults vs a stock HF BART of the same shape on a real task (docs/benchmarks.md, "Quality"):
# make bench-quality ARGS=--quick (about two minutes) | ARGS="--precision bf16 fp32"
bench-quality: install
	$(PYTHON) -m enhanced_tx.bench.quality $(ARGS)

report: install
	$(PYTHON) -m enhanced_tx.tracking.report $(SWEEP) $(ARGS)

clean:
	rm -rf outputs .pytest_cache
