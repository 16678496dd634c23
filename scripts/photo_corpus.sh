#!/usr/bin/env bash
# Fetch the photo corpus and build TRAIN_CORE_minus_examples: TRAIN_CORE less the
# four photos that examples/ is made from (they must stay out of training).
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-.venv/bin/python}
cache=${N2N_CACHE:-$HOME/.cache/n2n}
"$py" -m n2n_train.cli corpus --set TRAIN_CORE --set TRAIN_EXTRA
photos="$cache/photos/TRAIN_CORE_minus_examples"
# Built in place without emptying it first, so that a run already reading it (two trainings
# started together) never sees it missing; links left from an older corpus are removed.
mkdir -p "$photos"
for f in "$photos"/*; do
  [[ -L $f && -e "$cache/photos/TRAIN_CORE/$(basename "$f")" ]] || rm -f "$f"
done
for f in "$cache"/photos/TRAIN_CORE/*; do
  case "$(basename "$f")" in *astronaut.png|*coffee.png|*chelsea.png|*rocket.jpg) continue;; esac
  dst="$photos/$(basename "$f")"
  [[ -L $dst ]] || ln -s "$f" "$dst" 2>/dev/null || [[ -L $dst ]]
done
echo "$photos"
