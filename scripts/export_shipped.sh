#!/usr/bin/env bash
# Export every shipped model from its committed checkpoint, check parity, write cards and reports.
#   models/photo.onnx       fp32, parity figures on the held-out TRAIN_EXTRA photos (sigma 25)
#   models/grey.onnx        fp32, 1 channel; parity figures on the luma of the held-out
#                           TRAIN_EXTRA photos (sigma 25)
#   models/seedlike.onnx    fp32, parity figures on the seed-like validation pairs
#                           (needs ~/.cache/n2n/seedlike from `n2n-train make-seedlike`)
#   models/*.parity.json    the parity report on examples/clean (rerun by CI)
# The summaries in models/*.pt name data and files, never paths (scripts/scrub_metadata.py).
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-.venv/bin/python}
cache=${N2N_CACHE:-$HOME/.cache/n2n}
"$py" -m n2n_train.cli corpus --set TRAIN_CORE --set TRAIN_EXTRA >/dev/null

"$py" -m n2n_export.cli onnx models/photo.pt models/photo.onnx --name photo \
  --reproduce "bash scripts/train_default.sh runs && INIT_FROM=runs EPOCHS=50 bash scripts/train_default.sh runs-ft && INIT_FROM=runs-ft EPOCHS=60 LR=3e-4 AVERAGE=5 bash scripts/train_default.sh runs-ft2 && INIT_FROM=runs-ft2 EPOCHS=60 LR=2e-4 AVERAGE=5 bash scripts/train_default.sh runs-ft3 && INIT_FROM=runs-ft3 EPOCHS=60 LR=2e-4 BATCH=32 STEPS=75 AVERAGE=5 bash scripts/train_default.sh runs-ft4 && INIT_FROM=runs-ft4 EPOCHS=60 LR=2e-4 BATCH=64 STEPS=38 AVERAGE=5 bash scripts/train_default.sh runs-ft5 && INIT_FROM=runs-ft5 EPOCHS=50 LR=2e-4 BATCH=128 STEPS=19 AVERAGE=5 bash scripts/train_default.sh runs-ft6 && INIT_FROM=runs-ft6 EPOCHS=50 LR=2e-4 BATCH=256 STEPS=10 AVERAGE=5 bash scripts/train_default.sh runs-ft7" \
  --images "$cache/photos/TRAIN_EXTRA" --noise gaussian:25
"$py" -m n2n_export.cli onnx models/grey.pt models/grey.onnx --name grey \
  --reproduce "bash scripts/train_grey.sh runs && INIT_FROM=runs EPOCHS=40 LR=4e-4 SEED=1 bash scripts/train_grey.sh runs-ft && INIT_FROM=runs-ft EPOCHS=30 LR=2e-4 BATCH=32 STEPS=75 SEED=2 bash scripts/train_grey.sh runs-ft2 && INIT_FROM=runs-ft2 EPOCHS=80 LR=3e-4 SEED=4 TARGET=clean bash scripts/train_grey.sh runs-ft3" \
  --images "$cache/photos/TRAIN_EXTRA" --noise gaussian:25
"$py" -m n2n_export.cli onnx models/seedlike.pt models/seedlike.onnx --name seedlike \
  --reproduce "n2n-train corpus && n2n-train make-seedlike ~/.cache/n2n/seedlike --seed 0 && n2n-train fit --course ~/.cache/n2n/seedlike/train_data.pkl --course-val ~/.cache/n2n/seedlike/val_data.pkl --out runs/seedlike --epochs 50 --batch-size 50 --study --precision bf16 --channels-last --threads 1 --seed 0" \
  --val-data "$cache/seedlike/val_data.pkl"
for m in photo grey seedlike; do
  "$py" -m n2n_export.cli parity "models/$m.pt" "models/$m.onnx" --images examples/clean \
    --noise gaussian:25 --report "models/$m.parity.json" >/dev/null
done
"$py" scripts/scrub_metadata.py --check  # names and checksums only, no path of this machine
echo "exported: $(ls models/*.onnx | tr '\n' ' ')"
