"""HEIC writing: x265's preset in n2n_infer.heif against libheif's default, on real photos.

Encodes each TRAIN_EXTRA photo (at its own size, 8-bit RGB, 4:2:0 as phones write)
at quality 95 with libheif's default settings and with ``n2n_infer.heif.PRESET``,
and prints, per photo and in total, the seconds per megapixel, the file size and
the PSNR of the decoded file against the pixels encoded. Both encodes of a photo
run back to back, so the ratios hold on a shared machine. Needs the ``heic``
extra. Writes bench/results/heic.{json,md}.

    python -m bench.heic
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import time

import numpy as np

from bench.quality import REPO
from bench.variants import machine
from n2n_export.data import load_clean_images
from n2n_infer import heif
from n2n_infer.metrics import psnr
from n2n_train.corpus import fetch_corpus

SETTINGS = {"libheif default": None, f"preset {heif.PRESET}": heif.PRESET}


def _encode(px: np.ndarray, preset: str | None) -> tuple[float, bytes]:
    import pillow_heif

    options: dict = {"quality": heif.QUALITY, "chroma": 420, "tile_size": heif.TILE}
    if preset:
        options["enc_params"] = {"preset": preset}
    out = io.BytesIO()
    start = time.perf_counter()
    pillow_heif.encode("RGB", (px.shape[1], px.shape[0]), px.tobytes(), out, **options)
    return time.perf_counter() - start, out.getvalue()


def _decode(data: bytes) -> np.ndarray:
    import pillow_heif

    return np.asarray(pillow_heif.open_heif(io.BytesIO(data)))


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    if not heif.HAS_HEIF:
        raise SystemExit('bench.heic: needs the heic extra: pip install "n2n[heic]"')
    photos = load_clean_images(fetch_corpus(("TRAIN_EXTRA",))["TRAIN_EXTRA"])
    rows = []
    for i, px in enumerate(photos):
        px = np.ascontiguousarray(px)
        row = {"photo": i, "megapixels": round(px.shape[0] * px.shape[1] / 1e6, 3)}
        for name, preset in SETTINGS.items():
            seconds, data = _encode(px, preset)
            row[name] = {
                "s_per_mp": round(seconds / row["megapixels"], 3),
                "kb": round(len(data) / 1000, 1),
                "psnr": round(psnr(_decode(data), px), 2),
            }
        rows.append(row)
    default, ours = SETTINGS
    total = {
        name: {
            "s_per_mp": round(float(np.mean([r[name]["s_per_mp"] for r in rows])), 3),
            "kb": round(float(np.sum([r[name]["kb"] for r in rows])), 1),
            "psnr": round(float(np.mean([r[name]["psnr"] for r in rows])), 2),
        }
        for name in SETTINGS
    }
    speedup = total[default]["s_per_mp"] / total[ours]["s_per_mp"]
    size = total[ours]["kb"] / total[default]["kb"]
    dpsnr = total[ours]["psnr"] - total[default]["psnr"]
    doc = {
        "date": datetime.date.today().isoformat(),
        "machine": machine(),
        "command": "python -m bench.heic",
        "photos": "TRAIN_EXTRA, at their own sizes, 8-bit RGB, 4:2:0, quality 95",
        "rows": rows,
        "mean": total,
        f"{ours} vs default": {
            "speed": round(speedup, 2),
            "size": round(size, 3),
            "psnr_db": round(dpsnr, 2),
        },
    }
    lines = [
        f"# HEIC writing: {ours} against libheif's default",
        "",
        f"{doc['date']}, {doc['machine']}, `{doc['command']}`; {doc['photos']}.",
        "",
        "| setting | s per megapixel (mean) | all files (kB) | decoded PSNR (mean, dB) |",
        "| --- | ---: | ---: | ---: |",
        *(
            f"| {n} | {t['s_per_mp']:.2f} | {t['kb']:.0f} | {t['psnr']:.2f} |"
            for n, t in total.items()
        ),
        "",
        f"{ours}: {speedup:.2f}× the speed, {size:.3f}× the size, {dpsnr:+.2f} dB.",
    ]
    results = REPO / "bench" / "results"
    (results / "heic.json").write_text(json.dumps(doc, indent=1) + "\n")
    (results / "heic.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
