"""bench/zcontext_product.py: fit → export → Denoiser on a few planes, a few steps.

The real run trains 1500 steps per K on the 64-plane volume; here 16 planes and 4
steps of 2 patches show that the product path runs end to end and the result files
hold what the report reads.
"""

import json
import math

import numpy as np
import pytest
import tifffile

from bench.zcontext_product import from_stored, main, to_stored

pytestmark = pytest.mark.slow


def test_the_stored_float32_maps_back_to_the_noisy_scale():
    noisy = np.array([-0.4, 0.0, 0.5, 1.0, 2.4], np.float32)
    stored, clipped = to_stored(noisy)
    assert stored.dtype == np.float32 and clipped == 0
    assert np.all((stored >= 0) & (stored <= 1))
    assert np.allclose(from_stored(stored), noisy, atol=1e-6)
    assert to_stored(np.array([-1.0, 3.0]))[1] == 2


def test_a_tiny_run_writes_finite_psnrs_and_gains(tmp_path, monkeypatch):
    seen = []
    real = tifffile.imwrite
    monkeypatch.setattr(tifffile, "imwrite", lambda p, d, **kw: (seen.append(d), real(p, d, **kw)))
    stem = tmp_path / "zc"
    args = ["--contexts", "0,1", "--planes", "16", "--epochs", "1", "--steps-per-epoch", "4",
            "--batch", "2", "--patch", "32", "--seeds", "0", "--out", str(stem)]  # fmt: skip
    main(args)
    result = json.loads(stem.with_suffix(".json").read_text())
    assert {"date", "machine", "versions", "command", "noisy_psnr_mean", "rows", "verdict"} <= set(
        result
    )
    assert result["command"].endswith("--out " + str(stem))
    assert result["storage"]["dtype"] == "float32"
    assert [r["k"] for r in result["rows"]] == [0, 1]
    assert math.isfinite(result["noisy_psnr_mean"])
    for row in result["rows"]:
        assert math.isfinite(row["psnr_mean"]) and math.isfinite(row["gain_mean"])
        assert ("--z-context" in row["fit_args"]) == (row["k"] > 0)
    assert result["rows"][0]["gain"] == [0.0]
    assert result["split"]["test_planes"] >= 2
    assert all(d.dtype == np.float32 and d.ndim == 3 for d in seen)  # ZYX float32 stacks
    table = stem.with_suffix(".md").read_text()
    assert "| 1 (3) |" in table and "Verdict:" in table
