#!/usr/bin/env bash
# Rebuild models/photo.{pt,onnx,md,parity.json} and its Noise2Clean twin
# bench/models/photo-n2c.pt: fetch the photos, train both side by side (one
# thread each), export, check parity.
# Usage: bash scripts/train_default.sh [RUNS_DIR]   (about 100 minutes on 2 CPU cores)
# The network size comes from scripts/size_sweep.sh (docs/training/size_sweep.md).
# Then `python -m bench.quality` compares it with OpenCV NLM, wavelets and CBM3D, and
# `python -m bench.variants` measures the fp16/int8 variants.
# A run that was stopped resumes with RESUME=1 bash scripts/train_default.sh.
# EPOCHS=N (default 60) trains longer, e.g. across sessions with RESUME=1:
#   EPOCHS=300 bash scripts/train_default.sh ~/.cache/n2n/runs/long300
# INIT_FROM=DIR fine-tunes instead: each model starts from DIR/photo/best.pt or
# DIR/photo-n2c/best.pt (averaged.pt where there is one) with a new cosine
# schedule from LR (default 5e-4), e.g.
#   INIT_FROM=runs EPOCHS=50 bash scripts/train_default.sh runs-ft
# Every epoch's weights are also kept in RUN/snapshots/ (2 MB each); AVERAGE=K ships
# the mean of the last K (n2n-train average) instead of the best epoch, e.g.
#   INIT_FROM=runs-ft EPOCHS=60 LR=3e-4 AVERAGE=5 bash scripts/train_default.sh runs-ft2
# (the shipped models: eight stages, the last six with AVERAGE=5, the last four in BATCH=32 STEPS=75,
# BATCH=64 STEPS=38, BATCH=128 STEPS=19 and BATCH=256 STEPS=10; docs/photo_model.md).
# BATCH=N and STEPS=N (default 16 and 150) change the batch size and steps per epoch,
# e.g. BATCH=32 STEPS=75 draws as many patches per epoch in half the steps.
# No --swap: on photo folders it made the clipped input the target half the time,
# which biased black and white (docs/photo_model.md, "The swap flaw").
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-runs}
py=${PYTHON:-.venv/bin/python}
photos=$(bash scripts/photo_corpus.sh | tail -n 1)
mkdir -p "$runs" bench/models
recipe=(--photos "$photos" --noise gaussian:0-50 --features 32,64,128 --convs-per-level 2
  --residual --pyramid 3 --patch-size 96 --batch-size ${BATCH:-16} --epochs ${EPOCHS:-60}
  --steps-per-epoch ${STEPS:-150}
  --optimizer adam --schedule cosine --dihedral --precision bf16 --channels-last
  --threads 1 --seed 0 --no-progress --snapshot-every 1 ${RESUME:+--resume})
n2n=() n2c=()
start() {  # the weights a run in $INIT_FROM shipped: its average if AVERAGE= made one
  if [[ -e $INIT_FROM/$1/averaged.pt ]]; then echo "$INIT_FROM/$1/averaged.pt"; else echo "$INIT_FROM/$1/best.pt"; fi
}
if [[ -n ${INIT_FROM:-} ]]; then
  recipe+=(--lr "${LR:-5e-4}")
  n2n=(--init "$(start photo)")
  n2c=(--init "$(start photo-n2c)")
fi
"$py" -m n2n_train.cli -v fit "${recipe[@]}" "${n2n[@]}" --out "$runs/photo" \
  >>"$runs/photo.log" 2>&1 &
"$py" -m n2n_train.cli -v fit "${recipe[@]}" "${n2c[@]}" --target clean --out "$runs/photo-n2c" \
  >>"$runs/photo-n2c.log" 2>&1 &
wait
keep=best.pt
if [[ -n ${AVERAGE:-} ]]; then
  keep=averaged.pt
  for m in photo photo-n2c; do
    "$py" -m n2n_train.cli average "$runs/$m/averaged.pt" "$runs/$m/snapshots" --last "$AVERAGE"
  done
fi
cp "$runs/photo/$keep" models/photo.pt
cp "$runs/photo-n2c/$keep" bench/models/photo-n2c.pt
"$py" scripts/photo_report.py "$runs"
bash scripts/export_shipped.sh
