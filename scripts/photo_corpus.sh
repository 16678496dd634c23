#!/usr/bin/env bash
# Fetch the photo corpus and build TRAIN_CORE_minus_examples: TRAIN_CORE less the
# four photos that examples/ is made from (they must stay out of training).
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-.venv/bin/python}
cache=${N2N_CACHE:-$HOME/.cache/n2n}
"$py" -m n2n_train.cli corpus --set TRAIN_CORE --set TRAIN_EXTRA
photos="$cache/photos/TRAIN_CORE_minus_examples"
rm -rf "$photos" && mkdir -p "$photos"
for f in "$cache"/photos/TRAIN_CORE/*; do
  case "$(basename "$f")" in *astronaut.png|*coffee.png|*chelsea.png|*rocket.jpg) continue;; esac
  ln -s "$f" "$photos/"
done
echo "$photos"
