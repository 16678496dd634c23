"""bench/scope.py's noises, and the committed report it wrote (CI does not re-run it)."""

import hashlib
import json

import numpy as np
import pytest

from bench.scope import (
    GREY,
    GREY_REPLICATE,
    JPEG_QUALITY,
    SIGMAS,
    conditions,
    correlated,
    jpeg,
    markdown,
    poisson,
)
from tests.conftest import REPO

RESULT = REPO / "bench" / "results" / "scope.json"


def test_poisson_noise_has_sigma_25_at_mid_grey_and_less_in_the_dark():
    rng = np.random.default_rng(0)
    mid = poisson(np.full((300, 300, 3), 128, np.uint8), rng).astype(float)
    dark = poisson(np.full((300, 300, 3), 16, np.uint8), rng).astype(float)
    assert np.std(mid) == pytest.approx(25, rel=0.03)
    assert np.mean(mid) == pytest.approx(128, abs=0.5)
    assert np.std(dark) < 10


def test_correlated_noise_has_the_given_sigma_and_correlated_neighbours():
    noisy = correlated(np.full((400, 400, 3), 128, np.uint8), np.random.default_rng(1))
    n = noisy.astype(float) - 128
    assert np.std(n) == pytest.approx(25, rel=0.03)
    corr = np.corrcoef(n[:, :-1].ravel(), n[:, 1:].ravel())[0, 1]
    assert corr == pytest.approx(2 / 3, abs=0.03)
    far = np.corrcoef(n[:, :-3].ravel(), n[:, 3:].ravel())[0, 1]
    assert abs(far) < 0.03  # a 3×3 kernel: nothing shared three pixels apart


def test_jpeg_condition_is_a_decoded_rgb_uint8_image():
    clean = np.full((64, 80, 3), 100, np.uint8)
    out = jpeg(clean, np.random.default_rng(2))
    assert out.shape == clean.shape and out.dtype == np.uint8
    assert 5 < np.std(out.astype(float) - 100) < 25  # compression removes some of the noise


def test_committed_report_covers_every_condition_and_matches_the_docs():
    result = json.loads(RESULT.read_text())
    names = [c.name for c in conditions()] + [GREY_REPLICATE]
    assert list(result["results"]) == names
    for name, row in result["results"].items():
        for method in ("noisy", "photo", "wavelet"):
            assert len(row[method]["psnr_per_image"]) == 8, (name, method)
            mean = np.mean(row[method]["psnr_per_image"])
            assert row[method]["psnr"] == pytest.approx(mean, abs=1e-3)
    r = result["results"]
    assert r["gaussian σ=0"]["input_sigma"] == 0
    assert [r[f"gaussian σ={s}"]["trained"] for s in SIGMAS] == [s <= 50 for s in SIGMAS]
    assert f"jpeg q={JPEG_QUALITY}" in r
    # the point of the phases: a grey photo is denoised, not passed through
    assert r[GREY]["photo"]["psnr"] > r[GREY_REPLICATE]["photo"]["psnr"] + 5
    shipped = hashlib.sha256((REPO / "models" / "photo.pt").read_bytes()).hexdigest()
    assert result["model_sha256"] == shipped  # re-run bench.scope when the model changes
    docs = (REPO / "docs" / "scope.md").read_text()
    assert markdown(result) in docs
    assert all(line in docs for line in result["findings"])
    assert (REPO / "docs" / "quality" / "scope_sigma.png").stat().st_size > 10_000


def test_scope_figures_in_the_docs_are_the_committed_ones():
    r = json.loads(RESULT.read_text())["results"]
    jpg = r[f"jpeg q={JPEG_QUALITY}"]
    scope = (REPO / "docs" / "scope.md").read_text()  # the README links there
    figures = [
        (r["poisson"]["noisy"]["psnr"], r["poisson"]["photo"]["psnr"]),
        (r["gaussian σ=100"]["photo"]["psnr"], r["gaussian σ=100"]["wavelet"]["psnr"]),
        (r["correlated σ=25"]["noisy"]["psnr"], r["correlated σ=25"]["photo"]["psnr"]),
        (jpg["noisy"]["psnr"], jpg["photo"]["psnr"]),
        (r["gaussian σ=0"]["photo"]["psnr"], r[GREY]["photo"]["psnr"]),
        (r[GREY]["noisy"]["psnr"], r[GREY_REPLICATE]["photo"]["psnr"]),
    ]
    for pair in figures:
        for value in pair:
            assert f"{value:.2f}" in scope, value
    docs = (REPO / "docs" / "runtime.md").read_text()
    for row, method in ((GREY, "photo"), (GREY_REPLICATE, "photo"), (GREY, "wavelet")):
        assert f"{r[row][method]['psnr']:.2f} dB" in docs, (row, method)
