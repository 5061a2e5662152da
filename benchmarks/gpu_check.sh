#!/usr/bin/env bash
# The prepared GPU check: bash benchmarks/gpu_check.sh [--dry-run] [--steps N] [--no-compile] [--budget-s S]
# Writes $OUT/gpu_check.json (or /tmp/gpu_check.json), a copy named by date and device under benchmarks/results/
# (a --dry-run's copy goes beside --out instead), and prints a table; exit status 1 if any part failed.
# Under 8 minutes in all (parts that would overrun --budget-s, default 420 s, are skipped and listed).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
results=benchmarks/results
for arg in "$@"; do [ "$arg" = --dry-run ] && results="${OUT:-/tmp}"; done
exec timeout 470 python benchmarks/gpu_check.py --out "${OUT:-/tmp}/gpu_check.json" --results-dir "$results" "$@"
