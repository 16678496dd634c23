"""Grey photos: the grey-native model against BM3D given the true noise, and today's path.

Usage: python -m bench.grey [--model grey] [--sets TRAIN_EXTRA,TRAIN_GRAY]
       [--noises gaussian:15 gaussian:25 gaussian:50 poisson-gaussian:30,2] [--limit N]
       [--ensemble N] [--out bench/results/grey]

Needs the bench extra (``pip install -e ".[train,bench]"``: bm3d) and the photo
corpus sets (``n2n-train corpus --set TRAIN_EXTRA --set TRAIN_GRAY``; fetched here when
missing). Writes ``OUT.json`` (every per-image figure) and ``OUT.md`` (the tables).

Held-out grey photos: the ``TRAIN_EXTRA`` colour photos made grey (ITU-R BT.601 luma,
rounded to uint8) and the ``TRAIN_GRAY`` grey photos (their luma where a file stores
colour). The ``grey`` model trained on ``TRAIN_CORE`` only, so both sets are held out.
Every photo is resized (Lanczos) to cover 480×320 and centre-cropped to it (portrait
photos transposed first), in colour, then made grey.

Noises, drawn with seeded numpy generators (one per noise, set and photo) on the
clean grey uint8 image, then clipped and rounded to uint8 as a file holds them:
Gaussian ``gaussian:SIGMA`` (0-255 scale) and camera noise
``poisson-gaussian:PHOTONS,READ`` (``Poisson(PHOTONS·x) + N(0, READ²)`` photons for a
pixel of value x in [0, 1], scaled back by 1/PHOTONS; ``n2n_train.noise``).

Methods (each reads the noisy uint8 image; its output is rounded to uint8):
- ``noisy``: the input itself.
- ``photo-phases``: today's path for grey images, the colour ``photo`` model fed
  the image's pixel phases (``Denoiser("photo", grey="phases")``); blind.
- ``grey``: the grey-native model (``--model``), fp32 onnxruntime; blind.
- ``grey-xN`` (with ``--ensemble N``, 2, 4 or 8): the same model averaged over N
  flips and rotations (``Denoiser(ensemble=N)``), at about N times its time; a
  second table gives it against BM3D.
- ``bm3d``: ``bm3d.bm3d`` (bm3d package, profile "np") given the true noise.
  Gaussian: ``sigma_psd = SIGMA/255``. Camera noise, two standard ways, both
  given the true PHOTONS and READ:
  ``bm3d-gat``: the generalized Anscombe transform stabilises the variance, BM3D
  denoises at sigma 1 (on the transformed image scaled to [0, 1] by its minimum and
  maximum, sigma scaled alike), and the exact unbiased inverse maps back, computed for the
  observation as the file holds it (clipped to [0, 255] and rounded); and
  ``bm3d-var``: BM3D on the image with ``sigma_psd`` the root of the noise's
  variance averaged over the image (``mean(x)/PHOTONS + (READ/PHOTONS)²``).
  ``bm3d-gat-textbook`` (JSON only) is the GAT with the exact unbiased inverse
  of the unclipped, unrounded noise. The table's BM3D column takes, per noise,
  the way with the higher mean over all photos (chosen on the test photos
  themselves: in BM3D's favour) and names it.

PSNR: per image, peak 255, against the clean grey uint8 image, in float64
(``n2n_infer.metrics.psnr``); the tables give the mean per set and over all photos.

Time: seconds per image of each method's whole call on the uint8 image, one thread
each (onnxruntime ``intra_op_threads=1``; BM3D's ``num_threads=1``), measured in the
same run, interleaved photo by photo (the order of ``grey`` and BM3D alternates),
after one untimed call of each network; the table gives the medians and their ratio
BM3D / grey.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import importlib.metadata
import platform
import sys
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.report import write_results
from bench.variants import machine
from n2n_infer.metrics import psnr

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "results" / "grey"
SETS = ("TRAIN_EXTRA", "TRAIN_GRAY")
NOISES = ("gaussian:15", "gaussian:25", "gaussian:50", "poisson-gaussian:30,2")
#: Every photo's size (landscape).
HEIGHT, WIDTH = 320, 480
#: The speed the grey model must reach: at least this many times BM3D's.
SPEED_TARGET = 10.0
#: Points of the expected-value curve inverted by the exact unbiased inverse.
GAT_GRID = 4001

Method = Callable[[np.ndarray], np.ndarray]  # uint8 H×W -> uint8 H×W
Photos = Mapping[str, Sequence[tuple[str, np.ndarray]]]  # set -> (name, clean H×W uint8)


@dataclass(frozen=True)
class Noise:
    """One noise of the bench: Gaussian (``sigma``, 0-255) or camera (``photons``, ``read``)."""

    spec: str
    kind: str
    sigma: float = 0.0
    photons: float = 0.0
    read: float = 0.0

    @property
    def label(self) -> str:
        """The noise in words, for the table."""
        if self.kind == "gaussian":
            return f"Gaussian σ {self.sigma:g}"
        return f"Poisson-Gaussian, {self.photons:g} photons at white, read noise {self.read:g}"

    def apply(self, clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The noisy uint8 image (clipped and rounded) of a clean uint8 one."""
        from n2n_train.noise import gaussian_u8, poisson_gaussian_u8

        if self.kind == "gaussian":
            return gaussian_u8(clean, self.sigma, rng)
        return poisson_gaussian_u8(clean, self.photons, self.read, rng)


def parse_noise(spec: str) -> Noise:
    """``gaussian:SIGMA`` or ``poisson-gaussian:PHOTONS[,READ]`` (one value each, no range).

    Raises:
        ValueError: another kind, a range, or a value out of bounds.
    """
    kind, _, value = spec.partition(":")
    try:
        numbers = [float(v) for v in value.split(",")]
    except ValueError:
        raise ValueError(f"noise {spec!r}: expected numbers after the colon") from None
    if kind == "gaussian" and len(numbers) == 1 and numbers[0] > 0:
        return Noise(spec, kind, sigma=numbers[0])
    if kind == "poisson-gaussian" and len(numbers) in (1, 2):
        photons, read = numbers[0], numbers[1] if len(numbers) == 2 else 0.0
        if photons > 0 and read >= 0:
            return Noise(spec, kind, photons=photons, read=read)
    raise ValueError(
        f"noise {spec!r}: expected gaussian:SIGMA (> 0) or poisson-gaussian:PHOTONS[,READ]"
    )


# --- The photos ---------------------------------------------------------------------------


def grey_photos(set_name: str, limit: int | None = None) -> list[tuple[str, np.ndarray]]:
    """The photos of a corpus set (fetched if missing), each resized and centre-cropped to
    480×320 and made grey (BT.601 luma, uint8 H×W), with their file names; sorted by name.
    """
    from n2n_export.data import grey_u8, resized_crops
    from n2n_infer.batch import find_images
    from n2n_infer.imageio import read_image
    from n2n_train.corpus import fetch_corpus

    folder = fetch_corpus((set_name,))[set_name]
    paths = find_images(folder)[:limit]
    crops = resized_crops([read_image(p) for p in paths], HEIGHT, WIDTH)
    return [(p.name, grey_u8(c)[:, :, 0]) for p, c in zip(paths, crops, strict=True)]


# --- BM3D given the true noise -------------------------------------------------------------


def to_u8(img: np.ndarray) -> np.ndarray:
    """A float image in [0, 1] (any range) rounded to uint8, as a written file would be."""
    return np.clip(np.round(np.asarray(img, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)


def _bm3d(z: np.ndarray, sigma: float) -> np.ndarray:
    """``bm3d.bm3d`` (profile "np") on one thread."""
    import bm3d

    profile = bm3d.BM3DProfile()
    profile.num_threads = 1
    return np.asarray(bm3d.bm3d(z, sigma_psd=sigma, profile=profile), dtype=np.float64)


def bm3d_gaussian(sigma_255: float) -> Method:
    """BM3D given the true Gaussian sigma (0-255 scale)."""

    def run(noisy: np.ndarray) -> np.ndarray:
        return to_u8(_bm3d(noisy.astype(np.float64) / 255.0, sigma_255 / 255.0))

    return run


def gat(counts: np.ndarray, read: float) -> np.ndarray:
    """The generalized Anscombe transform of Poisson-Gaussian counts (gain 1, no offset):
    ``2·sqrt(counts + 3/8 + read²)``, 0 where the root's argument is negative.

    M. Makitalo and A. Foi, "Optimal inversion of the generalized Anscombe transformation
    for Poisson-Gaussian noise", IEEE Trans. Image Process. 22(1):91-103, 2013: the GAT
    with gain alpha = 1, mean mu = 0 and sigma = ``read``. The result has a variance close to 1.
    """
    return 2.0 * np.sqrt(np.maximum(np.asarray(counts, np.float64) + 0.375 + read * read, 0.0))


def gat_expectation(photons: float, read: float, as_stored: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(y, E[gat(z) | y])`` for expected counts ``y`` on a grid over [0, PHOTONS].

    ``z`` is ``Poisson(y) + N(0, read²)`` counts. ``as_stored``: ``z`` as the file holds
    it, clipped to [0, PHOTONS] and rounded to the 256 levels ``j·PHOTONS/255``; else the
    raw ``z`` (the textbook case). Inverting this curve is Makitalo and Foi's exact
    unbiased inverse (2013): the ``y`` whose expected transform is ``D``.
    """
    from scipy.special import gammaln, ndtr

    k = np.arange(int(np.ceil(photons + 12.0 * np.sqrt(photons) + 30.0)) + 1, dtype=np.float64)
    if as_stored:
        step = photons / 255.0
        levels = np.arange(256) * step
        if read > 0:  # P(z rounds to level j | k) for the 256 levels' rounding intervals
            edges = np.concatenate(([-np.inf], (np.arange(255) + 0.5) * step, [np.inf]))
            cdf = ndtr((edges[None, :] - k[:, None]) / read)
            prob = np.diff(cdf, axis=1)
        else:
            prob = np.zeros((k.size, 256))
            prob[np.arange(k.size), np.clip(np.round(k / step), 0, 255).astype(int)] = 1.0
        g = prob @ gat(levels, read)
    elif read > 0:  # E[gat(k + n)], n ~ N(0, read²), on a fine grid of n
        n = np.linspace(-10.0 * read, 10.0 * read, 4001)
        w = np.exp(-0.5 * (n / read) ** 2)
        g = gat(k[:, None] + n[None, :], read) @ (w / w.sum())
    else:
        g = gat(k, read)
    y = np.linspace(0.0, photons, GAT_GRID)
    pmf = np.zeros((y.size, k.size))  # Poisson(k; y); y = 0: all its mass at k = 0
    pmf[0, 0] = 1.0
    pos = y[1:, None]
    pmf[1:] = np.exp(k[None, :] * np.log(pos) - pos - gammaln(k + 1.0)[None, :])
    expected = pmf @ g
    if not np.all(np.diff(expected) > 0):
        raise ArithmeticError("the expected transform is not increasing: cannot invert it")
    return y, expected


@functools.lru_cache(maxsize=8)
def _gat_curve(photons: float, read: float, as_stored: bool) -> tuple[np.ndarray, np.ndarray]:
    return gat_expectation(photons, read, as_stored)


def gat_inverse(d: np.ndarray, photons: float, read: float, as_stored: bool = True) -> np.ndarray:
    """The exact unbiased inverse of :func:`gat`: expected counts in [0, PHOTONS] whose
    expected transform is ``d`` (below the curve's range: 0; above it: PHOTONS)."""
    y, expected = _gat_curve(float(photons), float(read), bool(as_stored))
    return np.interp(d, expected, y)


def bm3d_gat_both(photons: float, read: float) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """BM3D in the generalized Anscombe domain given the true noise; the results of the two
    inverses (``"as-stored"`` and ``"textbook"``, see :func:`gat_expectation`) of one run.

    The transformed image is scaled to [0, 1] by its own minimum and maximum and BM3D
    given the sigma (1) scaled alike (BM3D's profiles are tuned for data in [0, 1]).
    """
    _gat_curve(float(photons), float(read), True)  # build both curves outside the timed calls
    _gat_curve(float(photons), float(read), False)

    def run(noisy: np.ndarray) -> dict[str, np.ndarray]:
        fz = gat(noisy.astype(np.float64) * (photons / 255.0), read)
        lo, hi = float(fz.min()), float(fz.max())
        span = hi - lo if hi > lo else 1.0
        d = _bm3d((fz - lo) / span, 1.0 / span) * span + lo
        return {
            way: to_u8(gat_inverse(d, photons, read, way == "as-stored") / photons)
            for way in ("as-stored", "textbook")
        }

    return run


def bm3d_variance(photons: float, read: float, clean: np.ndarray) -> Method:
    """BM3D given sigma = the root of the noise variance averaged over the image, from the
    true parameters and the clean image's mean: ``mean(x)/photons + (read/photons)²``."""
    x = clean.astype(np.float64) / 255.0
    sigma = float(np.sqrt(x.mean() / photons + (read / photons) ** 2))

    def run(noisy: np.ndarray) -> np.ndarray:
        return to_u8(_bm3d(noisy.astype(np.float64) / 255.0, sigma))

    return run


# --- The measurement -----------------------------------------------------------------------


def _timed(fn: Callable[[np.ndarray], Any], noisy: np.ndarray) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn(noisy)
    return out, time.perf_counter() - t0


def noise_rng(seed: int, noise: Noise, set_name: str, index: int) -> np.random.Generator:
    """The generator of one photo's noise: the same whatever else the run measures."""
    key = [seed, zlib.crc32(noise.spec.encode()), zlib.crc32(set_name.encode()), index]
    return np.random.default_rng(key)


def measure(
    photos: Photos,
    noises: Sequence[Noise],
    networks: Mapping[str, Method],
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """PSNR and seconds of every method on every photo and noise: one record each.

    ``networks``: the blind methods by name (``"photo-phases"``, ``"grey"``), uint8 H×W
    in and out. A record: ``set``, ``photo``, ``noise`` (its spec), ``psnr`` and
    ``seconds`` (method -> value; ``noisy`` has no seconds).
    """
    records = []
    for noise in noises:
        gaussian_bm3d = bm3d_gaussian(noise.sigma) if noise.kind == "gaussian" else None
        gat_run = bm3d_gat_both(noise.photons, noise.read) if noise.kind != "gaussian" else None
        for set_name, items in photos.items():
            for i, (name, clean) in enumerate(items):
                noisy = noise.apply(clean, noise_rng(seed, noise, set_name, i))
                outputs: dict[str, np.ndarray] = {"noisy": noisy}
                seconds: dict[str, float] = {}
                classical: dict[str, Callable[[np.ndarray], Any]] = {}
                if gaussian_bm3d is not None:
                    classical["bm3d"] = gaussian_bm3d
                else:
                    classical["bm3d-gat"] = gat_run  # type: ignore[assignment]
                    classical["bm3d-var"] = bm3d_variance(noise.photons, noise.read, clean)
                order = [*networks.items(), *classical.items()]
                if i % 2:  # alternate which of the networks and BM3D runs first
                    order = [*classical.items(), *networks.items()]
                for method, fn in order:
                    out, seconds[method] = _timed(fn, noisy)
                    if method == "bm3d-gat":
                        outputs["bm3d-gat"] = out["as-stored"]
                        outputs["bm3d-gat-textbook"] = out["textbook"]
                    else:
                        outputs[method] = out
                scores = {m: psnr(out, clean) for m, out in outputs.items()}
                records.append(
                    {
                        "set": set_name,
                        "photo": name,
                        "noise": noise.spec,
                        "psnr": scores,
                        "seconds": seconds,
                    }
                )
                if progress is not None:
                    progress(
                        f"{noise.spec} {set_name} {name}: "
                        + ", ".join(f"{m} {v:.2f}" for m, v in scores.items())
                    )
    return records


def summarise(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per noise: the BM3D way the table uses, and per set and over ``"all"`` photos the
    mean PSNR of each method, grey − BM3D (mean, standard error, wins), median seconds
    and the speed ratio BM3D / grey (medians)."""
    summary: dict[str, Any] = {}
    for spec in dict.fromkeys(r["noise"] for r in records):
        rows = [r for r in records if r["noise"] == spec]
        ways = [m for m in ("bm3d", "bm3d-gat", "bm3d-var") if m in rows[0]["psnr"]]
        used = max(ways, key=lambda m: np.mean([r["psnr"][m] for r in rows]))
        groups = {"all": rows}
        for set_name in dict.fromkeys(r["set"] for r in rows):
            groups[set_name] = [r for r in rows if r["set"] == set_name]
        per_group = {}
        for group, members in groups.items():
            methods = list(members[0]["psnr"])
            ensembles = [m for m in methods if m.startswith("grey-x")]
            diff = np.array([r["psnr"]["grey"] - r["psnr"][used] for r in members])
            timed = list(members[0]["seconds"])
            median = {m: float(np.median([r["seconds"][m] for r in members])) for m in timed}
            per_group[group] = {
                "photos": len(members),
                "psnr": {m: float(np.mean([r["psnr"][m] for r in members])) for m in methods},
                "grey_minus_bm3d": float(diff.mean()),
                "grey_minus_bm3d_se": float(diff.std(ddof=1) / np.sqrt(diff.size))
                if diff.size > 1
                else None,
                "grey_wins": int(np.sum(diff > 0)),
                "seconds_median": median,
                "speed_ratio": median[used] / median["grey"],
                "ensembles": {
                    m: {
                        "minus_bm3d": float(
                            np.mean([r["psnr"][m] - r["psnr"][used] for r in members])
                        ),
                        "wins": int(sum(r["psnr"][m] > r["psnr"][used] for r in members)),
                        "speed_ratio": median[used] / median[m],
                    }
                    for m in ensembles
                },
            }
        summary[spec] = {"bm3d_used": used, "groups": per_group}
    return summary


# --- The report ----------------------------------------------------------------------------

WAY_NAMES = {"bm3d": "", "bm3d-gat": " (GAT)", "bm3d-var": " (mean var.)"}


def _table(summary: Mapping[str, Any], labels: Mapping[str, str], group: str) -> list[str]:
    lines = [
        "| noise | noisy | photo-phases | grey | BM3D | grey − BM3D | speed ratio |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for spec, entry in summary.items():
        g = entry["groups"].get(group)
        if g is None:
            continue
        used, p, sec = entry["bm3d_used"], g["psnr"], g["seconds_median"]
        se = f" ± {g['grey_minus_bm3d_se']:.2f}" if g["grey_minus_bm3d_se"] is not None else ""
        lines.append(
            f"| {labels.get(spec, spec)} | {p['noisy']:.2f} | {p['photo-phases']:.2f} "
            f"| {p['grey']:.2f} | {p[used]:.2f}{WAY_NAMES[used]} "
            f"| {g['grey_minus_bm3d']:+.2f}{se} ({g['grey_wins']}/{g['photos']} wins) "
            f"| {g['speed_ratio']:.1f}× ({sec[used]:.2f} s / {sec['grey']:.3f} s) |"
        )
    return lines


def _ensemble_table(summary: Mapping[str, Any], labels: Mapping[str, str]) -> list[str]:
    """Over all photos, each self-ensemble of the grey model against BM3D (none: [])."""
    lines: list[str] = []
    for spec, entry in summary.items():
        g = entry["groups"]["all"]
        for m, e in g.get("ensembles", {}).items():
            if not lines:
                lines = [
                    "| noise | ensemble | grey | grey, ensemble | ensemble − BM3D | speed ratio |",
                    "|---|---:|---:|---:|---:|---:|",
                ]
            lines.append(
                f"| {labels.get(spec, spec)} | ×{m.removeprefix('grey-x')} "
                f"| {g['psnr']['grey']:.2f} | {g['psnr'][m]:.2f} | {e['minus_bm3d']:+.2f} "
                f"({e['wins']}/{g['photos']} wins) | {e['speed_ratio']:.1f}× |"
            )
    return lines


def verdict(summary: Mapping[str, Any], labels: Mapping[str, str]) -> list[str]:
    """One line per noise over all photos: does grey reach BM3D, at ten times its speed?"""
    lines = []
    for spec, entry in summary.items():
        g = entry["groups"]["all"]
        quality = "reaches" if g["grey_minus_bm3d"] >= 0 else "falls short of"
        speed = "meets" if g["speed_ratio"] >= SPEED_TARGET else "misses"
        lines.append(
            f"- {labels.get(spec, spec)}: grey {quality} BM3D ({g['grey_minus_bm3d']:+.2f} dB, "
            f"{g['grey_wins']}/{g['photos']} photos) at {g['speed_ratio']:.1f}× its speed "
            f"({speed} the {SPEED_TARGET:g}× target)."
        )
    return lines


def markdown(result: Mapping[str, Any]) -> str:
    """The report: header, verdict, the table over all photos and one per set."""
    summary = result["summary"]
    labels = {n: parse_noise(n).label for n in summary}
    cpu = result["cpu"]
    versions = ", ".join(f"{k} {v}" for k, v in result["versions"].items())
    sets = ", ".join(f"{s} ({v['photos']} photos)" for s, v in result["sets"].items())
    lines = [
        "# Grey photos: the grey model against BM3D",
        "",
        f"{result['date']}; {cpu['model_name']} (family {cpu['family']}, model "
        f"{cpu['model']}); {result['machine']}; `{result['command']}`; {versions}; "
        f"model `{result['model']}` (sha256 `{result['model_sha256'][:12]}…`); "
        f"photos: {sets}, {WIDTH}×{HEIGHT} grey.",
        "",
        "Mean PSNR (dB, peak 255, per image against the clean grey uint8, then the mean). "
        "BM3D is given the true noise; for camera noise the table takes the better of the "
        "generalized Anscombe transform with its exact unbiased inverse (GAT) and BM3D at "
        "the image's mean noise variance (mean var.), both in the JSON. grey − BM3D: mean "
        "± standard error over photos, and the photos where grey scores higher. Speed "
        "ratio: BM3D's median seconds per image over grey's, one thread each, same run.",
        "",
        *verdict(summary, labels),
        "",
        f"## All photos ({sum(v['photos'] for v in result['sets'].values())})",
        "",
        *_table(summary, labels, "all"),
    ]
    ensembles = _ensemble_table(summary, labels)
    if ensembles:
        lines += [
            "",
            "## Self-ensemble (all photos)",
            "",
            "The grey model averaged over flips and rotations (`Denoiser(ensemble=N)`); "
            "speed ratio: BM3D's median seconds over the ensemble's.",
            "",
            *ensembles,
        ]
    for set_name, info in result["sets"].items():
        lines += ["", f"## {set_name} ({info['photos']} photos)", ""]
        lines += _table(summary, labels, set_name)
    return "\n".join(lines) + "\n"


def cpu_info() -> dict[str, str]:
    """The CPU's model name, family, model and stepping, from /proc/cpuinfo."""
    info = {"model_name": platform.processor() or "unknown", "family": "?", "model": "?"}
    keys = {
        "model name": "model_name",
        "cpu family": "family",
        "model": "model",
        "stepping": "stepping",
    }
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if not line.strip():
                break  # the first processor's block only
            key, _, value = line.partition(":")
            if key.strip() in keys:
                info[keys[key.strip()]] = value.strip()
    return info


def versions() -> dict[str, str]:
    """Versions of the packages whose code is measured."""
    out = {}
    for pkg in ("onnxruntime", "bm3d", "bm4d", "numpy"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            if pkg == "onnxruntime":  # the GPU wheel provides the same module
                out[pkg] = importlib.metadata.version("onnxruntime-gpu")
    return out


def main() -> None:
    from n2n_infer import Denoiser
    from n2n_infer.files import sha256_file

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="grey", help="the grey model: a bundled name or a path")
    ap.add_argument("--sets", default=",".join(SETS), help="corpus sets, comma-separated")
    ap.add_argument("--noises", nargs="+", default=list(NOISES), metavar="SPEC")
    ap.add_argument("--limit", type=int, default=None, help="photos per set (a quick run)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--ensemble",
        type=int,
        choices=(2, 4, 8),
        default=None,
        help="also the grey model averaged over N flips and rotations",
    )
    ap.add_argument("--out", type=Path, default=OUT, help="STEM of STEM.json and STEM.md")
    args = ap.parse_args()
    noises = [parse_noise(n) for n in args.noises]
    grey = Denoiser(args.model, device="cpu", intra_op_threads=1)
    if grey.channels != 1:
        raise SystemExit(f"{args.model}: a {grey.channels}-channel model, not a grey one")
    phases = Denoiser("photo", device="cpu", grey="phases", intra_op_threads=1)
    photos = {s: grey_photos(s, args.limit) for s in args.sets.split(",")}
    warm = np.full((HEIGHT, WIDTH), 128, np.uint8)
    grey.denoise(warm)
    phases.denoise(warm)
    networks: dict[str, Method] = {"photo-phases": phases.denoise, "grey": grey.denoise}
    if args.ensemble:
        ensemble = Denoiser(args.model, device="cpu", intra_op_threads=1, ensemble=args.ensemble)
        ensemble.denoise(warm)
        networks[f"grey-x{args.ensemble}"] = ensemble.denoise
    t0 = time.perf_counter()
    records = measure(
        photos, noises, networks, args.seed, lambda s: print(s, file=sys.stderr, flush=True)
    )
    result: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_info(),
        "machine": machine(),
        "command": " ".join(["python -m bench.grey", *sys.argv[1:]]),
        "versions": versions(),
        "model": str(grey.path),
        "model_sha256": sha256_file(grey.path),
        "threads": 1,
        "seed": args.seed,
        "size": [HEIGHT, WIDTH],
        "sets": {s: {"photos": len(v), "names": [n for n, _ in v]} for s, v in photos.items()},
        "noises": {n.spec: n.label for n in noises},
        "wall_seconds": time.perf_counter() - t0,
        "summary": summarise(records),
        "images": records,
    }
    table = markdown(result)
    write_results(args.out, result, table)
    print(table)


if __name__ == "__main__":
    main()
