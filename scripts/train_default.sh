#!/usr/bin/env bash
# Rebuild models/photo.{pt,onnx,md,parity.json}: fetch the photos, train, export, check parity.
# Usage: bash scripts/train_default.sh [RUN_DIR]   (about 15 minutes on 2 CPU cores)
# Then `python bench/variants.py` measures the fp16/int8 variants and `bash scripts/export_shipped.sh`
# re-exports every shipped model from its checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
run=${1:-runs/photo}
py=${PYTHON:-.venv/bin/python}
cache=${N2N_CACHE:-$HOME/.cache/n2n}

"$py" -m training.cli corpus --set TRAIN_CORE --set TRAIN_EXTRA
# The sample images in examples/ come from these four photos: keep them out of training.
photos="$cache/photos/TRAIN_CORE_minus_examples"
rm -rf "$photos" && mkdir -p "$photos"
for f in "$cache"/photos/TRAIN_CORE/*; do
  case "$(basename "$f")" in *astronaut.png|*coffee.png|*chelsea.png|*rocket.jpg) continue;; esac
  ln -s "$f" "$photos/"
done

"$py" -m training.cli -v fit --photos "$photos" --out "$run" --preset study \
  --noise gaussian:0-50 --optimizer adam --epochs 20 --steps-per-epoch 100 \
  --batch-size 50 --patch-size 64 --seed 0
cp "$run/best.pt" models/photo.pt
bash scripts/export_shipped.sh
