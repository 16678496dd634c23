"""bench/quality.py's own arithmetic, and the committed report it wrote.

The comparison itself needs bm3d, OpenCV and scikit-image (the ``bench`` extra) and
minutes of CPU, so CI checks the committed figures' consistency, not a re-run.
"""

import json

import numpy as np
import pytest

from bench.quality import (
    TARGET_SIGMA,
    margin_over_draws,
    markdown,
    paired,
    to_u8,
    verdict,
)
from n2n_infer.metrics import psnr
from n2n_train.checkpoint import load_checkpoint
from n2n_train.noise import gaussian_u8
from tests.conftest import REPO

RESULT = REPO / "bench" / "results" / "quality.json"


def test_noise_is_clipped_rounded_uint8_with_the_given_sigma():
    clean = np.full((200, 300, 3), 128, np.uint8)
    noisy = gaussian_u8(clean, 25, np.random.default_rng(0))
    assert noisy.dtype == np.uint8
    assert np.std(noisy.astype(float) - 128) == pytest.approx(25, rel=0.02)
    saturated = gaussian_u8(np.full((50, 50, 3), 250, np.uint8), 25, np.random.default_rng(0))
    assert saturated.max() == 255  # clipped, not wrapped


def test_float_outputs_are_rounded_like_a_written_file():
    assert to_u8(np.array([-0.1, 0.5, 1.2, 0.2 / 255])).tolist() == [0, 128, 255, 0]
    a = np.zeros((4, 4, 3), np.uint8)
    b = a.copy()
    b[0, 0, 0] = 255  # MSE = 255² / 48 -> PSNR = 10 log10(48)
    assert psnr(b, a) == pytest.approx(10 * np.log10(48), abs=1e-4)


def _result(photo, cbm3d, twin, photo_speed=1.0, cbm3d_speed=50.0):
    row = {
        "noisy": {"psnr": 20.2, "seconds_per_mp": 0.0},
        "cbm3d": {"psnr": cbm3d, "seconds_per_mp": cbm3d_speed},
        "photo": {"psnr": photo, "seconds_per_mp": photo_speed},
        "photo-n2c": {"psnr": twin, "seconds_per_mp": photo_speed},
    }
    return {"results": {str(TARGET_SIGMA): row}}


def test_verdict_states_each_target_with_its_margin():
    lines = verdict(_result(photo=30.5, cbm3d=31.25, twin=30.6))
    assert lines[0] == "- PSNR: photo trails CBM3D by 0.75 dB at sigma 25."
    assert lines[1] == "- Speed: photo is 50× faster per megapixel than CBM3D (target ≥ 10×)."
    assert "+0.100 dB" in lines[2]
    result = _result(photo=30.5, cbm3d=31.25, twin=30.6)
    result["results"]["25"]["photo-x4"] = {"psnr": 31.3, "seconds_per_mp": 4.0}
    assert verdict(result)[2] == "- With `ensemble=4`: beats CBM3D by 0.05 dB, 12× faster."
    assert verdict(_result(31.5, 31.25, 31.5))[0].startswith("- PSNR: photo beats CBM3D by 0.25")
    # a near-tie keeps its sign and size instead of printing as 0.00
    tie = verdict(_result(photo=31.7216, cbm3d=31.7219, twin=31.9208))
    assert tie[0] == "- PSNR: photo trails CBM3D by 0.0003 dB at sigma 25."
    assert "+0.199 dB" in tie[-1]


def test_paired_difference_counts_wins_and_gives_the_standard_error():
    row = {
        "photo": {"psnr_per_image": [31.0, 30.0, 33.0, 29.0]},
        "cbm3d": {"psnr_per_image": [30.0, 30.5, 32.0, 29.5]},
    }
    wins, n, mean, se = paired(row)  # differences +1, -0.5, +1, -0.5
    assert (wins, n) == (2, 4)
    assert mean == pytest.approx(0.25)
    assert se == pytest.approx(np.std([1, -0.5, 1, -0.5], ddof=1) / 2)


def test_verdict_reports_the_spread_between_photos_and_between_noise_draws():
    result = _result(photo=31.7226, cbm3d=31.7219, twin=31.9)
    row = result["results"]["25"]
    row["photo"]["psnr_per_image"] = [31.0, 32.4452]
    row["cbm3d"]["psnr_per_image"] = [31.2, 32.2438]
    result["draws"] = {"photo_minus_cbm3d": [-0.0013, 0.002, 0.0041, 0.001]}
    lines = verdict(result)
    assert lines[0] == "- PSNR: photo beats CBM3D by 0.0007 dB at sigma 25."
    assert lines[2] == (
        "- Photo by photo: photo beats CBM3D on 1 of 2; the paired difference is "
        "+0.001 ± 0.201 dB (mean ± standard error over the 2 photos)."
    )
    assert lines[3] == (
        "- Noise draws: over the table's draw and 4 more at sigma 25, photo − CBM3D is "
        "+0.0013 dB on average (from -0.0013 to +0.0041); photo is ahead in 4 of 5."
    )
    assert "twin" in lines[-1]


def test_extra_noise_draws_differ_from_the_table_and_from_each_other():
    clean = [np.full((40, 60, 3), 120, np.uint8), np.full((40, 60, 3), 60, np.uint8)]
    seen = []

    def identity(sigma):
        return lambda x: (seen.append(x.copy()), x)[1]

    def mean_filter(sigma):  # a flat image's best denoiser: better than doing nothing
        return lambda x: np.full_like(x, np.round(x.mean()))

    margins = margin_over_draws({"photo": mean_filter, "cbm3d": identity}, clean, draws=2)
    assert len(margins) == 2 and all(m > 10 for m in margins)
    assert len(seen) == 4  # no warm-up call: 2 draws × 2 photos
    assert not np.array_equal(seen[0], seen[2])  # draw 2 is new noise
    table_noise = gaussian_u8(clean[0], TARGET_SIGMA, np.random.default_rng(TARGET_SIGMA))
    assert not np.array_equal(seen[0], table_noise)


def test_markdown_table_has_a_row_per_method():
    table = markdown(_result(30.5, 31.25, 30.6)).splitlines()
    assert table[0] == "| method | σ=25 PSNR (dB) | s/MP (σ=25) |"
    assert table[2] == "| noisy | 20.20 | – |"
    assert table[4] == "| photo | 30.50 | 1.00 |"


def test_committed_report_is_complete_and_matches_readme_and_docs():
    result = json.loads(RESULT.read_text())
    assert set(result["results"]) == {"15", "25", "50"}
    methods = {"noisy", "opencv-nlm", "wavelet", "cbm3d", "photo", "photo-n2c"}
    methods |= {"photo-x2", "photo-x4", "photo-x8"}
    for sigma, row in result["results"].items():
        assert set(row) == methods, sigma
        for name, r in row.items():
            assert len(r["psnr_per_image"]) == 8
            assert r["psnr"] == pytest.approx(np.mean(r["psnr_per_image"]), abs=1e-3), name
            if name != "noisy":
                assert r["psnr"] > row["noisy"]["psnr"] + 3, (sigma, name)
    draws = result["draws"]["photo_minus_cbm3d"]
    assert len(draws) == 4 and len(set(draws)) == 4  # four distinct noise realisations
    assert result["verdict"] == verdict(result)  # the committed verdict is this code's
    docs = (REPO / "docs" / "quality.md").read_text()
    table = markdown(result)
    assert table in docs
    assert all(line in docs for line in result["verdict"])
    assert (REPO / "docs" / "quality" / f"crops_sigma{TARGET_SIGMA}.png").stat().st_size > 10_000
    readme = (REPO / "README.md").read_text()
    for name in methods - {"noisy"}:
        psnr25 = result["results"]["25"][name]["psnr"]
        assert f"| {name} | " in readme and f"{psnr25:.2f}" in readme, name
    assert result["date"] in readme


def test_the_noise2clean_twin_is_the_photo_network_with_clean_targets():
    photo = load_checkpoint(REPO / "models" / "photo.pt")
    twin = load_checkpoint(REPO / "bench" / "models" / "photo-n2c.pt")
    assert twin.config == photo.config
    a, b = photo.summary["train_config"], twin.summary["train_config"]
    assert (a["target"], b["target"]) == ("noisy", "clean")
    differ = {k for k in a.keys() | b.keys() if a.get(k) != b.get(k)}
    # each fine-tune starts from its own stage-1 run, so `init` (a sha256) differs too
    assert differ - {"init"} == {"target"}
    assert bool(a.get("init")) == bool(b.get("init"))
    assert ("init" in photo.summary) == ("init" in twin.summary)
