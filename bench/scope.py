"""Scope: what the photo model does with noise it was and was not trained for.

``python -m bench.scope [--model photo]`` (needs the ``bench`` extra for the wavelet
baseline) runs the model through ``n2n_infer`` on the held-out set of
``bench/quality.py`` (8 ``TRAIN_EXTRA`` photos at 480×320) under:

- Gaussian noise from σ=0 (a clean input) to σ=100, on the 0-255 scale; the model was
  trained on σ 0-50;
- noise it was not trained for, each about as strong as σ=25: signal-dependent
  (Poisson) noise, spatially correlated noise, Gaussian noise saved as JPEG, and a
  grey photo (the same noise in all three channels once the runtime turns it to
  colour).

Every input is a uint8 image, clipped and rounded as a file would be. It compares
the model with the blind wavelet denoiser of ``bench/quality.py``, which works on
any image with no training, and writes ``bench/results/scope.json``,
``docs/scope.md`` and ``docs/quality/scope_sigma.png``. About a minute on 2 cores.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from bench.quality import REPO, to_u8, wavelet
from bench.variants import held_out_images, machine
from n2n_infer import Denoiser
from n2n_infer.metadata import KEY_CHECKPOINT_SHA256
from n2n_infer.metrics import psnr
from n2n_train.noise import correlated_u8, gaussian_u8, poisson_u8

#: Gaussian sigmas of the sweep; the model was trained on 0-50.
SIGMAS = (0, 5, 10, 15, 25, 35, 50, 65, 80, 100)
TRAINED_MAX_SIGMA = 50
#: Strength of the off-model noises: about sigma 25 on the 0-255 scale.
OFF_SIGMA = 25
#: Poisson peak: variance x / PEAK for x in [0, 1], so std 25/255 at mid-grey.
PEAK = 0.5 / (OFF_SIGMA / 255) ** 2
JPEG_QUALITY = 90

Noise = Callable[[np.ndarray, np.random.Generator], np.ndarray]


@dataclass(frozen=True)
class Condition:
    name: str
    description: str
    noise: Noise
    trained: bool  # inside what the model was trained on
    grey: bool = False  # the clean image is grey (H×W)


def gaussian(sigma: float) -> Noise:
    def run(clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return gaussian_u8(clean, sigma, rng) if sigma else clean.copy()

    return run


def poisson(clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Signal-dependent noise: counts ``Poisson(x · PEAK) / PEAK`` for x in [0, 1]."""
    return poisson_u8(clean, PEAK, rng)


def correlated(clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise of std ``OFF_SIGMA`` per pixel, smoothed by a 3×3 binomial kernel.

    Neighbouring pixels' noise is correlated (0.67 between horizontal neighbours),
    as after demosaicing or resampling a noisy image (``training.noise.correlated_u8``).
    """
    return correlated_u8(clean, OFF_SIGMA, rng)


def jpeg(clean: np.ndarray, rng: np.random.Generator, quality: int = JPEG_QUALITY) -> np.ndarray:
    """Gaussian noise of sigma 25, then saved as a JPEG of ``quality`` and read back."""
    buf = io.BytesIO()
    Image.fromarray(gaussian_u8(clean, OFF_SIGMA, rng)).save(buf, "JPEG", quality=quality)
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB"))


def conditions() -> list[Condition]:
    out = [
        Condition(
            f"gaussian σ={s}",
            "a clean input" if s == 0 else f"Gaussian, σ={s}",
            gaussian(s),
            s <= TRAINED_MAX_SIGMA,
        )
        for s in SIGMAS
    ]
    out += [
        Condition(
            "poisson",
            f"signal-dependent (Poisson, peak {PEAK:.0f}: σ=25 at mid-grey, less in shadows)",
            poisson,
            False,
        ),
        Condition(
            "correlated σ=25",
            "Gaussian σ=25 smoothed by a 3×3 kernel (noise grains of a few pixels)",
            correlated,
            False,
        ),
        Condition(
            f"jpeg q={JPEG_QUALITY}",
            f"Gaussian σ=25, then saved as JPEG at quality {JPEG_QUALITY}",
            jpeg,
            False,
        ),
        Condition(GREY, "a grey photo with Gaussian σ=25", gaussian(OFF_SIGMA), True, True),
    ]
    return out


#: The grey condition, and its run with the grey copied into R, G and B.
GREY = "grey σ=25"
GREY_REPLICATE = "grey σ=25, copied to RGB"


def grey(img: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(img).convert("L"))


def wavelet_any(noisy: np.ndarray) -> np.ndarray:
    """``bench.quality.wavelet`` for colour; the same BayesShrink on a grey image."""
    if noisy.ndim == 3:
        return wavelet(noisy)
    from skimage.restoration import denoise_wavelet

    out = denoise_wavelet(
        noisy.astype(np.float64) / 255.0, method="BayesShrink", mode="soft", rescale_sigma=True
    )
    return to_u8(out)


def evaluate(
    methods: dict[str, Callable[[np.ndarray], np.ndarray]],
    images: list[np.ndarray],
    conds: list[Condition],
    seed: int = 0,
) -> dict[str, dict]:
    """Per condition: each method's mean PSNR (and per image); ``noisy`` is the input."""
    results: dict[str, dict] = {}
    for i, c in enumerate(conds):
        rng = np.random.default_rng(seed + 1000 * i)
        cleans = [grey(im) for im in images] if c.grey else images
        noisy = [c.noise(im, rng) for im in cleans]
        row: dict = {"description": c.description, "trained": c.trained}
        for name, method in {"noisy": lambda x: x, **methods}.items():
            scores = [psnr(method(x), im) for im, x in zip(cleans, noisy, strict=True)]
            row[name] = {
                "psnr": float(np.mean(scores)),
                "psnr_per_image": [round(s, 3) for s in scores],
            }
        row["input_sigma"] = float(
            np.mean(
                [np.std(x.astype(np.float64) - im) for im, x in zip(cleans, noisy, strict=True)]
            )
        )
        results[c.name] = row
    return results


def _psnr_cell(row: dict, name: str) -> str:
    return "clean" if row["input_sigma"] == 0 and name == "noisy" else f"{row[name]['psnr']:.2f}"


def markdown(result: dict) -> str:
    lines = [
        "| input | trained for? | noise std | noisy | photo | wavelet | photo − wavelet |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in result["results"].items():
        diff = row["photo"]["psnr"] - row["wavelet"]["psnr"]
        cells = [
            name,
            "yes" if row["trained"] else "**no**",
            f"{row['input_sigma']:.1f}",
            _psnr_cell(row, "noisy"),
            _psnr_cell(row, "photo"),
            _psnr_cell(row, "wavelet"),
            f"{diff:+.2f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def findings(result: dict) -> list[str]:
    """What the numbers say, one sentence each, with the figures they rest on."""
    r = result["results"]

    def gain(name: str) -> float:
        return r[name]["photo"]["psnr"] - r[name]["noisy"]["psnr"]

    def lead(name: str) -> float:
        return r[name]["photo"]["psnr"] - r[name]["wavelet"]["psnr"]

    clean0 = r["gaussian σ=0"]["photo"]["psnr"]
    inside = [f"gaussian σ={s}" for s in SIGMAS if 0 < s <= TRAINED_MAX_SIGMA]
    above = [f"gaussian σ={s}" for s in SIGMAS if s > TRAINED_MAX_SIGMA]
    lines = [
        f"- Trained range (σ {SIGMAS[1]}–{TRAINED_MAX_SIGMA}): photo gains "
        f"{min(gain(n) for n in inside):.1f}–{max(gain(n) for n in inside):.1f} dB over its input "
        f"and leads the wavelet denoiser by {min(lead(n) for n in inside):.1f}–"
        f"{max(lead(n) for n in inside):.1f} dB.",
        f"- A clean input (σ=0) comes back at {clean0:.2f} dB against itself, an RMSE of "
        f"{255 * 10 ** (-clean0 / 20):.2f} of 255 levels (wavelet: "
        f"{r['gaussian σ=0']['wavelet']['psnr']:.2f} dB): it smooths away a little fine "
        "texture that it takes for noise, so images without noise are better left out.",
    ]
    lines.append(
        "- Above the trained range the gain holds but shrinks: "
        + ", ".join(
            f"σ={n.split('=')[1]}: {r[n]['photo']['psnr']:.2f} dB "
            f"({lead(n):+.2f} dB against wavelet)"
            for n in above
        )
        + "."
    )
    off = [n for n, row in r.items() if not row["trained"] and not n.startswith("gaussian")]
    for n in off:
        row = r[n]
        lines.append(
            f"- {row['description'][0].upper()}{row['description'][1:]}: "
            f"{row['noisy']['psnr']:.2f} → {row['photo']['psnr']:.2f} dB "
            f"({gain(n):+.2f} dB; wavelet {row['wavelet']['psnr']:.2f} dB)."
        )
    g, rep = r[GREY], r[GREY_REPLICATE]
    lines.append(
        f"- A grey photo at σ=25: {g['noisy']['psnr']:.2f} → {g['photo']['psnr']:.2f} dB "
        f"(wavelet {g['wavelet']['psnr']:.2f} dB), against "
        f"{r['gaussian σ=25']['photo']['psnr']:.2f} dB for colour photos at the same σ. "
        f"Copied into R, G and B instead of split into its pixel phases, it only reaches "
        f"{rep['photo']['psnr']:.2f} dB: the model takes noise that is the same in all three "
        "channels for picture."
    )
    return lines


def sigma_figure(result: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r = result["results"]
    sig = [s for s in SIGMAS if s > 0]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.axvspan(0, TRAINED_MAX_SIGMA, color="0.92", label="trained σ range")
    for name, style in (("noisy", "k:"), ("wavelet", "C1s-"), ("photo", "C0o-")):
        ax.plot(sig, [r[f"gaussian σ={s}"][name]["psnr"] for s in sig], style, label=name)
    ax.set_xlabel("Gaussian σ (0–255 scale)")
    ax.set_ylabel("mean PSNR (dB)")
    ax.set_xlim(0, max(sig) + 5)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("8 held-out photos, 480×320", fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def report(result: dict, figure: Path) -> str:
    descriptions = "\n".join(
        f"- **{name}**: {row['description']}."
        for name, row in result["results"].items()
        if not name.startswith("gaussian")
    )
    return f"""# Scope: what the photo model is for

Measured on {result["date"]}, {result["machine"]}, by `{result["command"]}`
(raw figures in `bench/results/scope.json`).

The shipped `photo` model (checkpoint `{result["model_sha256"][:12]}…`) is a blind
denoiser for Gaussian-like noise of σ 0–50 (0–255 scale) in colour photos. This page
measures what it does outside that: clean inputs, stronger noise, and noises it was
not trained for. Held-out set: {result["held_out"]}. Each input is a uint8 image, as
a file would be; the table gives the mean per-image PSNR against the clean photo,
for the model through `n2n_infer` and for the blind wavelet denoiser of
[quality.md](quality.md) (BayesShrink, which needs no training and adapts to any
image). "noise std" is the measured standard deviation of input − clean.

{markdown(result)}
{chr(10).join(result["findings"])}

![PSNR against Gaussian sigma]({figure.as_posix()})

The inputs besides Gaussian noise:

{descriptions}

Noise the model was not trained for can be trained for: `training/noise.py` draws
the same correlated noise (`--noise correlated:0-50`) and Poisson noise, and mixes
them with Gaussian noise (`--noise gaussian:0-50+correlated:0-50`); see
[training.md](training.md). No such model is shipped, so none is measured here.
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="photo", help="model name or .onnx path (default photo)")
    ap.add_argument(
        "--limit", type=int, default=0, help="use only the first N photos (a quick look)"
    )
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "scope.md")
    args = ap.parse_args()
    denoiser = Denoiser(args.model, device="cpu")
    path = denoiser.path.resolve()
    images = held_out_images()
    images = images[: args.limit] if args.limit else images
    conds = conditions()
    results = evaluate({"photo": denoiser.denoise, "wavelet": wavelet_any}, images, conds)
    # the same grey inputs copied into R, G and B (grey="replicate": the earlier default)
    i = [c.name for c in conds].index(GREY)
    again = dataclasses.replace(
        conds[i],
        name=GREY_REPLICATE,
        description='the same grey photos copied into R, G and B (`grey="replicate"`)',
    )
    replicate = Denoiser(args.model, device="cpu", grey="replicate")
    methods = {"photo": replicate.denoise, "wavelet": wavelet_any}
    results |= evaluate(methods, images, [again], seed=1000 * i)
    result = {
        "date": datetime.date.today().isoformat(),
        "machine": machine(),
        "command": "python -m bench.scope",
        "model": str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path),
        "model_sha256": denoiser.info.raw.get(KEY_CHECKPOINT_SHA256, ""),
        "held_out": f"{len(images)} TRAIN_EXTRA photos, resized and centre-cropped to 480×320",
        "results": results,
    }
    result["findings"] = findings(result)
    out_json = REPO / "bench" / "results" / "scope.json"
    out_json.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    fig = args.out.parent / "quality" / "scope_sigma.png"
    sigma_figure(result, fig)
    args.out.write_text(report(result, fig.relative_to(args.out.parent)))
    print(markdown(result))
    print("\n".join(result["findings"]))


if __name__ == "__main__":
    main()
