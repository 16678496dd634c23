#!/usr/bin/env bash
# Export every shipped model from its committed checkpoint, check parity, write cards and reports.
#   models/photo.onnx       fp32, parity figures on the held-out TRAIN_EXTRA photos (sigma 25)
#   models/*.parity.json    the parity report on examples/clean (rerun by CI)
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-.venv/bin/python}
cache=${N2N_CACHE:-$HOME/.cache/n2n}
"$py" -m training.cli corpus --set TRAIN_CORE --set TRAIN_EXTRA >/dev/null

"$py" -m export.cli onnx models/photo.pt models/photo.onnx --name photo \
  --reproduce "bash scripts/train_default.sh" \
  --images "$cache/photos/TRAIN_EXTRA" --noise gaussian:25
for m in photo; do
  "$py" -m export.cli parity models/photo.pt "models/$m.onnx" --images examples/clean \
    --noise gaussian:25 --report "models/$m.parity.json" >/dev/null
done
echo "exported: $(ls models/*.onnx | tr '\n' ' ')"
