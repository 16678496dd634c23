#!/usr/bin/env bash
# The CUDA path, proven in one go on a machine with one NVIDIA GPU (at most 8 minutes).
#
#   bash scripts/gpu_check.sh                 # GPU machine: installs .[cuda,train,dev] with pip,
#                                             # writes bench/results/gpu.{json,md}
#   bash scripts/gpu_check.sh --dry-run       # any machine: every step on the CPU, small sizes,
#                                             # results in a temporary folder (CI runs this)
#   bash scripts/gpu_check.sh --out DIR       # results elsewhere
#
# Environment: PYTHON (default python3, or .venv/bin/python when present);
# N2N_GPU_SITE=DIR: a folder of already unpacked packages (onnxruntime-gpu and
# whatever else the machine lacks) put first on PYTHONPATH instead of pip
# installing: for a machine with no package index.
# Steps and what each measures: scripts/gpu_check.py.
set -euo pipefail
cd "$(dirname "$0")/.."

dry=0
out=""
budget=450
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) dry=1 ;;
        --out) out="$2"; shift ;;
        --budget) budget="$2"; shift ;;
        -h|--help) sed -n 2,14p "$0"; exit 0 ;;
        *) echo "gpu_check.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
if [ -z "$out" ]; then
    if [ "$dry" = 1 ]; then out="$(mktemp -d)/gpu-dry-run"; else out=bench/results; fi
fi

if [ -n "${N2N_GPU_SITE:-}" ]; then
    export PYTHONPATH="$N2N_GPU_SITE${PYTHONPATH:+:$PYTHONPATH}"
elif [ "$dry" = 0 ]; then
    "$PYTHON" -m pip install -q -e ".[cuda,train,dev]"
fi
# n2n itself, where the environment does not have it yet (no index needed)
if ! "$PYTHON" -c "import n2n_infer.cli, n2n_train.cli, n2n_export.cli" 2>/dev/null; then
    "$PYTHON" -m pip install -q --no-deps --no-build-isolation --no-index -e .
fi

if [ "$dry" = 0 ]; then
    # The product's own path first: onnxruntime.preload_dlls() finds pip's CUDA libraries.
    # Only if that cannot start CUDA are the pip NVIDIA library folders put on the loader path
    # (recorded in gpu.json as ld_library_path_set_by_script).
    probe_log="$(mktemp)"
    if ! "$PYTHON" -c "from n2n_infer import Denoiser; Denoiser(device='cuda')" 2>"$probe_log"; then
        echo "gpu_check.sh: Denoiser(device='cuda') failed as installed:" >&2
        tail -3 "$probe_log" >&2
        libs="$("$PYTHON" - <<'PY'
import glob, os, site
dirs = []
for base in site.getsitepackages():
    dirs += sorted(glob.glob(os.path.join(base, "nvidia", "*", "lib")))
print(":".join(dirs))
PY
)"
        export LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
        export N2N_GPU_LD_PATH="$libs"
    fi
    rm -f "$probe_log"
fi

args=(--out "$out" --budget "$budget")
[ "$dry" = 1 ] && args+=(--dry-run)
PYTHONUNBUFFERED=1 "$PYTHON" scripts/gpu_check.py "${args[@]}"
