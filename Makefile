PYTHON ?= python
# A plain `torch` requirement on a machine without torch pulls a multi-GB CUDA build;
# install the CPU wheel first where no torch is importable.
TORCH_VERSION ?= 2.13.0
SWEEP ?= latest
NPROC ?= 2

.PHONY: install train train-ddp train-fsdp convert generate eval test test-all lint bench report clean

install:
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install "torch==$(TORCH_VERSION)"
	@$(PYTHON) -c "import enhanced_tx, hydra, pytest, ruff" 2>/dev/null && $(PYTHON) -m pip install -q --no-deps -e . \
		|| $(PYTHON) -m pip install -q -e ".[dev]"

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
	$(PYTHON) -m pytest -m "not slow" -q $(ARGS)

test-all: install
	$(PYTHON) -m pytest -q $(ARGS)

lint: install
	$(PYTHON) -m ruff check enhanced_tx tests benchmarks run_train.py run_generate.py run_eval.py

bench: install
	$(PYTHON) -m enhanced_tx.bench $(ARGS)

report: install
	$(PYTHON) -m enhanced_tx.tracking.report $(SWEEP) $(ARGS)

clean:
	rm -rf outputs .pytest_cache
