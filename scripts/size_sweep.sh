#!/usr/bin/env bash
# The network-size sweep behind the photo model: three residual UNets trained for
# about the same CPU time (three runs side by side, one thread each), then
# `python scripts/size_report.py` compares validation PSNR with CPU inference speed.
# Usage: bash scripts/size_sweep.sh [RUNS_DIR]   (about 20 minutes on 2 CPU cores)
# It keeps --swap so that it reproduces the committed docs/training/size_sweep.md,
# measured before the swap flaw was found (docs/photo_model.md); all three candidates
# trained with it, so they were compared on equal terms.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-runs/sweep}
py=${PYTHON:-.venv/bin/python}
cache=${N2N_CACHE:-$HOME/.cache/n2n}
bash scripts/photo_corpus.sh >/dev/null
photos="$cache/photos/TRAIN_CORE_minus_examples"
mkdir -p "$runs"
common=(--photos "$photos" --noise gaussian:0-50 --optimizer adam --schedule cosine
  --convs-per-level 2 --residual --pyramid 3 --batch-size 16 --patch-size 96
  --dihedral --swap --precision bf16 --channels-last --threads 1 --seed 0 --no-progress)
# Steps per candidate: ~600 s of one core each at its measured training speed.
declare -A steps=([32,64,128]=100 [32,64,128,256]=70 [48,96,192,384]=36)
for f in "${!steps[@]}"; do
  name="f${f//,/-}"
  "$py" -m n2n_train.cli -v fit "${common[@]}" --features "$f" --epochs 10 \
    --steps-per-epoch "${steps[$f]}" --out "$runs/$name" >"$runs/$name.log" 2>&1 &
done
wait
echo "sweep runs in $runs"
