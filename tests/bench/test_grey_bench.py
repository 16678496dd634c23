"""bench/grey.py: its BM3D ways, and its table computed end to end on two tiny photos.

The real run needs the grey model, the corpus and many minutes of BM3D; here a
1-channel identity model stands in for the grey model (so its PSNR is the noisy
input's) and the photos are 48×64 synthetic ones.
"""

from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper

from bench.grey import (
    gat,
    gat_expectation,
    gat_inverse,
    markdown,
    measure,
    parse_noise,
    summarise,
)
from n2n_infer import Denoiser
from n2n_train.noise import poisson_gaussian_u8
from tests.conftest import synthetic_photo
from tests.infer.onnx_graphs import graph_model, save

pytest.importorskip("bm3d")  # bench.grey imports it only where BM3D runs


def test_noises_parse_to_their_parameters_and_bad_ones_are_refused():
    assert parse_noise("gaussian:25").sigma == 25
    camera = parse_noise("poisson-gaussian:30,2")
    assert (camera.kind, camera.photons, camera.read) == ("poisson-gaussian", 30, 2)
    assert parse_noise("poisson-gaussian:30").read == 0
    for bad in ("gaussian:0-50", "gaussian:x", "impulse:0.2", "poisson-gaussian:30,2,1"):
        with pytest.raises(ValueError, match="noise"):
            parse_noise(bad)


@pytest.mark.parametrize("value", [0, 3, 20, 128, 240, 255])
def test_the_exact_unbiased_inverse_gives_back_the_clean_level_of_stored_noise(value):
    """The mean transform of many noisy pixels of one level (what a perfect denoiser in the
    stabilised domain would give) maps back to that level, clipping and rounding included."""
    photons, read = 30.0, 2.0
    clean = np.full((500, 800), value, np.uint8)
    noisy = poisson_gaussian_u8(clean, photons, read, np.random.default_rng(value))
    d = gat(noisy * (photons / 255.0), read).mean()
    assert gat_inverse(np.array([d]), photons, read)[0] / photons * 255 == pytest.approx(
        value, abs=0.5
    )


def test_the_expected_transform_rises_and_tends_to_the_algebraic_inverse():
    y, expected = gat_expectation(30.0, 2.0, as_stored=False)
    assert np.all(np.diff(expected) > 0)
    # far from zero, E[gat(z)] ≈ 2·sqrt(y + 1/8 + read²) (Makitalo & Foi 2013)
    assert expected[-1] == pytest.approx(2 * np.sqrt(y[-1] + 1 / 8 + 4), rel=2e-3)


def _grey_identity(tmp_path: Path) -> Denoiser:
    shape = ["N", 1, "H", "W"]
    model = graph_model(
        [helper.make_node("Identity", ["noisy"], ["denoised"])],
        inputs=[helper.make_tensor_value_info("noisy", TensorProto.FLOAT, shape)],
        out_shape=shape,
    )
    path = save(model, tmp_path / "grey-identity.onnx", channels="1", grey="native")
    return Denoiser(path, device="cpu", intra_op_threads=1)


def _result(summary: dict, sets: tuple[str, ...]) -> dict:
    """A bench result around ``summary``, as ``bench.grey.main`` writes it (one photo a set)."""
    return {
        "date": "2026-01-01 00:00 UTC",
        "cpu": {"model_name": "CPU", "family": "6", "model": "85"},
        "machine": "CPU, 2 cores",
        "command": "python -m bench.grey",
        "versions": {"onnxruntime": "1", "bm3d": "4"},
        "model": "grey-identity.onnx",
        "model_sha256": "0" * 64,
        "sets": {s: {"photos": 1} for s in sets},
        "summary": summary,
    }


def test_the_table_is_computed_from_every_photo_method_and_noise(tmp_path):
    grey = _grey_identity(tmp_path)
    assert grey.channels == 1
    phases = Denoiser("photo", device="cpu", grey="phases", intra_op_threads=1)
    rng = np.random.default_rng(0)
    photos = {
        "A": [("a.png", synthetic_photo(rng, 48, 64)[:, :, 1])],
        "B": [("b.png", synthetic_photo(rng, 48, 64)[:, :, 0])],
    }
    noises = [parse_noise("gaussian:25"), parse_noise("poisson-gaussian:30,2")]
    networks = {"photo-phases": phases.denoise, "grey": grey.denoise}
    records = measure(photos, noises, networks, seed=0)
    assert len(records) == 4
    again = measure(photos, noises[:1], networks, seed=0)
    assert again[0]["psnr"] == records[0]["psnr"]  # seeded: the same noise
    for r in records:
        assert r["psnr"]["grey"] == r["psnr"]["noisy"]  # the identity model
        assert r["psnr"]["photo-phases"] > r["psnr"]["noisy"]
    camera = records[2]["psnr"]
    assert {"bm3d-gat", "bm3d-gat-textbook", "bm3d-var"} <= set(camera)
    assert set(records[2]["seconds"]) == {"photo-phases", "grey", "bm3d-gat", "bm3d-var"}

    summary = summarise(records)
    assert summary["gaussian:25"]["bm3d_used"] == "bm3d"
    used = summary["poisson-gaussian:30,2"]["bm3d_used"]
    assert used in ("bm3d-gat", "bm3d-var")
    overall = summary["poisson-gaussian:30,2"]["groups"]["all"]
    means = [np.mean([r["psnr"][m] for r in records[2:]]) for m in ("bm3d-gat", "bm3d-var")]
    assert overall["psnr"][used] == pytest.approx(max(means))
    assert overall["grey_minus_bm3d"] == pytest.approx(overall["psnr"]["grey"] - max(means))
    assert overall["grey_wins"] == 0 and overall["photos"] == 2
    b = summary["gaussian:25"]["groups"]["B"]
    assert b["psnr"]["bm3d"] == records[1]["psnr"]["bm3d"]
    assert b["speed_ratio"] == pytest.approx(
        records[1]["seconds"]["bm3d"] / records[1]["seconds"]["grey"]
    )

    text = markdown(_result(summary, ("A", "B")))
    assert "## All photos (2)" in text and "## A (1 photos)" in text
    assert "| Gaussian σ 25 |" in text
    assert "(GAT) |" in text or "(mean var.) |" in text
    assert "family 6, model 85" in text
    assert "Self-ensemble" not in text


def test_a_self_ensemble_gets_its_own_row_against_bm3d(tmp_path):
    grey = _grey_identity(tmp_path)
    x2 = Denoiser(grey.path, device="cpu", intra_op_threads=1, ensemble=2)
    rng = np.random.default_rng(1)
    photos = {"A": [("a.png", synthetic_photo(rng, 48, 64)[:, :, 1])]}
    networks = {"photo-phases": grey.denoise, "grey": grey.denoise, "grey-x2": x2.denoise}
    records = measure(photos, [parse_noise("gaussian:25")], networks, seed=0)
    assert records[0]["psnr"]["grey-x2"] == records[0]["psnr"]["grey"]  # identity: alike
    summary = summarise(records)
    overall = summary["gaussian:25"]["groups"]["all"]
    e = overall["ensembles"]["grey-x2"]
    assert e["minus_bm3d"] == pytest.approx(overall["grey_minus_bm3d"])
    assert e["speed_ratio"] == pytest.approx(
        records[0]["seconds"]["bm3d"] / records[0]["seconds"]["grey-x2"]
    )
    text = markdown(_result(summary, ("A",)))
    assert "## Self-ensemble (all photos)" in text
    assert f"| Gaussian σ 25 | ×2 | {overall['psnr']['grey']:.2f} |" in text


def test_stages_are_scored_on_the_bench_noise_draws_and_against_its_bm3d():
    import torch

    from bench.grey import noise_rng
    from bench.grey_stages import against_bm3d, score

    rng = np.random.default_rng(2)
    photos = {"A": [("a.png", synthetic_photo(rng, 48, 64)[:, :, 1])]}
    scores = score({"identity": torch.nn.Identity()}, photos, ["gaussian:25"], seed=0)
    noise = parse_noise("gaussian:25")
    clean = photos["A"][0][1]
    noisy = noise.apply(clean, noise_rng(0, noise, "A", 0))
    from n2n_infer.metrics import psnr

    assert scores["identity"]["gaussian:25"] == pytest.approx(psnr(noisy, clean), abs=1e-9)
    entry = {"bm3d_used": "bm3d", "groups": {"all": {"psnr": {"bm3d": 30.0}}}}
    stored = {"summary": {"gaussian:25": entry}}
    diffs = against_bm3d(scores["identity"], stored)
    assert diffs["gaussian:25"] == pytest.approx(scores["identity"]["gaussian:25"] - 30.0)
