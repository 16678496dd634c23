#!/usr/bin/env bash
# Rebuild models/grey.pt: the grey-native (1-channel) model, trained blind on grey versions
# of the corpus photos (TRAIN_CORE less the examples) over Gaussian sigma 0-50 and
# Poisson-Gaussian noise (8 to 1000 photons at white, drawn log-uniformly; read noise 0-4
# photons), Noise2Noise (noisy targets). It starts from the colour photo model's weights
# converted to one channel (n2n_train.checkpoint.with_channels), the photo model's shape.
# Usage: bash scripts/train_grey.sh [RUNS_DIR]   (about 90 minutes on one core of 2)
# EPOCHS=N (default 50), LR (default 1e-3), THREADS (default 1), AVERAGE=K (default 5: the
# mean of the last K epochs' weights is shipped), BATCH and STEPS (default 16 and 150: the
# batch size and steps per epoch), SEED (default 0), TARGET (default noisy: Noise2Noise;
# clean: Noise2Clean, the clean patch as target), INSTALL=0 (leave models/grey.pt alone, for
# runs to compare before shipping), NOISE (default the mix below), PRECISION (default bf16;
# fp32 on a CPU without native bf16, where bf16 is ten times slower), FEATURES (default the
# starting model's; more levels than it has grow it, see `n2n-train fit --features`).
# INIT_FROM=DIR fine-tunes instead, from DIR/grey/averaged.pt (a previous run of this script),
# or from a checkpoint file or bundled model name, with a new cosine schedule from LR:
#   INIT_FROM=runs EPOCHS=40 LR=4e-4 SEED=1 bash scripts/train_grey.sh runs-ft
#   INIT_FROM=grey FEATURES=32,64,128,128,128 TARGET=clean bash scripts/train_grey.sh runs-deep
# Then `bash scripts/export_shipped.sh` exports it and `python -m bench.grey` compares it
# with BM3D (docs/grey.md).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-runs}
py=${PYTHON:-.venv/bin/python}
photos=$(bash scripts/photo_corpus.sh | tail -n 1)
mkdir -p "$runs"
init=photo
if [[ -d ${INIT_FROM:-} ]]; then init=$INIT_FROM/grey/averaged.pt; elif [[ -n ${INIT_FROM:-} ]]; then init=$INIT_FROM; fi
"$py" -m n2n_train.cli -v fit --photos "$photos" --channels 1 --init "$init" \
  --noise "${NOISE:-gaussian:0-50+poisson-gaussian:8-1000,0-4}" --patch-size 96 --pyramid 3 \
  --batch-size "${BATCH:-16}" --steps-per-epoch "${STEPS:-150}" --epochs "${EPOCHS:-50}" \
  --lr "${LR:-1e-3}" --target "${TARGET:-noisy}" --optimizer adam --schedule cosine --dihedral --precision "${PRECISION:-bf16}" \
  --channels-last --threads "${THREADS:-1}" --seed "${SEED:-0}" --no-progress --snapshot-every 1 ${RESUME:+--resume} ${FEATURES:+--features "$FEATURES"} \
  --out "$runs/grey" >>"$runs/grey.log" 2>&1
"$py" -m n2n_train.cli average "$runs/grey/averaged.pt" "$runs/grey/snapshots" --last "${AVERAGE:-5}"
if [[ ${INSTALL:-1} != 0 ]]; then cp "$runs/grey/averaged.pt" models/grey.pt; fi
