#!/usr/bin/env bash
# The prepared GPU check: bash benchmarks/gpu_check.sh [--dry-run] [--steps N] [--no-compile] [--budget-s S]
# Writes $OUT/gpu_check.json (or /tmp/gpu_check.json) and prints a table; exit status 1 if any part failed.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
exec timeout 298 python benchmarks/gpu_check.py --out "${OUT:-/tmp}/gpu_check.json" "$@"
