#!/usr/bin/env bash
# The checks for a lent GPU, under 10 minutes on one H100 (benchmarks/gpu_check.py): training speed of the 44.1 kHz
# recipe in bf16 with a moving average at batch 16 and 72, AudioTokenizer throughput, and the device against the CPU
# on trained weights. Prints Markdown tables for BENCHMARKS.md.
#   scripts/gpu_check.sh [--cpu] [--model DIR]     # --cpu: the same steps on CPU at tiny sizes, a check of the script
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
"$python" -m benchmarks.gpu_check "$@"
if [[ " $* " == *" --cpu "* ]]; then
    "$python" benchmarks/tokenize_throughput.py --device cpu --models tiny --batch-size 2 --repeats 1
else
    "$python" benchmarks/tokenize_throughput.py --device cuda --models full --batch-size 16 --repeats 3
fi
