#!/usr/bin/env bash
# Re-measure every committed figure that depends on the shipped photo model, in
# order, on a quiet machine (each benchmark compares within its own run):
#   docs/training/size_sweep.md      network size: PSNR per training second vs speed
#   docs/quality.md, bench/results/quality.json   photo vs OpenCV NLM, wavelets, CBM3D
#   docs/scope.md, bench/results/scope.json       photo on noises in and out of its training
#   bench/results/throughput.{json,md}             every CPU engine (torch, onnxruntime, OpenVINO), 1 and 2 threads
#   bench/results/memory.{json,md}                 peak memory up to 8000×8000
#   bench/results/variants-photo.*, models/photo.variants.json   fp16/int8 variants
# Usage: [REPEATS=5] bash scripts/refresh_benchmarks.sh [SWEEP_RUNS_DIR]   (about 30 minutes on 2 cores)
# Needs `pip install -e ".[train,dev,bench]"` and the photo corpus (n2n-train corpus).
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-.venv/bin/python}
sweep=${1:-runs/sweep}
if [ -d "$sweep" ]; then "$py" scripts/size_report.py "$sweep"; fi
"$py" -m bench.quality
"$py" -m bench.scope
"$py" bench/memory.py
"$py" -m bench.variants --model photo --repeats ${REPEATS:-5}
"$py" bench/throughput.py --repeats ${REPEATS:-5}
