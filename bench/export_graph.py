"""Does graph simplification help? The exporter's graph with and without optimisation.

Usage: python -m bench.export_graph [--model photo] [--repeats 9]

Exports ``models/MODEL.pt`` twice with torch's ONNX exporter: with its onnxscript
optimiser off and on (``optimize=``, what ``export_onnx`` uses), then compares
node counts, file sizes, session creation time and CPU run time on a 480×320
image (medians of interleaved repeats, one run). onnxruntime's own graph
optimisations (ORT_ENABLE_ALL) are on in both sessions, as in ``n2n_infer``.
Writes ``bench/results/export-graph-MODEL.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from bench.variants import machine
from n2n_export.onnx_model import OnnxDenoiser
from n2n_train.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parent.parent


def export(ckpt: Path, out: Path, optimize: bool) -> Path:
    model = OnnxDenoiser(load_checkpoint(ckpt).build_model())
    dims = {0: torch.export.Dim("N"), 2: torch.export.Dim("H"), 3: torch.export.Dim("W")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (torch.rand(1, 3, 8, 8),),
            str(out),
            input_names=["noisy"],
            output_names=["denoised"],
            dynamic_shapes={"noisy": dims},
            opset_version=20,
            dynamo=True,
            external_data=False,
            verbose=False,
            optimize=optimize,
        )
    return out


def main() -> None:
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="photo")
    ap.add_argument("--repeats", type=int, default=9)
    args = ap.parse_args()
    x = np.random.default_rng(0).random((1, 3, 320, 480), dtype=np.float32)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        paths = {
            f"optimize={o}": export(
                REPO / "models" / f"{args.model}.pt", Path(tmp) / f"{o}.onnx", o
            )
            for o in (False, True)
        }
        create = {k: [] for k in paths}
        run = {k: [] for k in paths}
        for _ in range(args.repeats):
            for k, p in paths.items():
                t0 = time.perf_counter()
                sess = ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
                create[k].append(time.perf_counter() - t0)
                sess.run(None, {"noisy": x})
                t0 = time.perf_counter()
                sess.run(None, {"noisy": x})
                run[k].append(time.perf_counter() - t0)
        for k, p in paths.items():
            rows[k] = {
                "nodes": len(onnx.load(str(p)).graph.node),
                "bytes": p.stat().st_size,
                "create_s": statistics.median(create[k]),
                "run_s": statistics.median(run[k]),
            }
    result = {
        "model": args.model,
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine(),
        "repeats": args.repeats,
        "rows": rows,
    }
    lines = [
        f"Export graph of `{args.model}` ({result['date']}, {result['machine']}), medians "
        f"of {args.repeats} interleaved runs, one 480×320 image:",
        "",
        "| export | nodes | size (kB) | session creation (ms) | run (ms) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for k, r in rows.items():
        lines.append(
            f"| {k} | {r['nodes']} | {r['bytes'] / 1e3:.0f} | {r['create_s'] * 1e3:.1f} "
            f"| {r['run_s'] * 1e3:.1f} |"
        )
    out = REPO / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"export-graph-{args.model}.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / f"export-graph-{args.model}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
