"""BioImage.IO packages in the runtime (``n2n_infer.package``): a package n2n wrote runs as its
ONNX file does (zip or folder, ``Denoiser`` and ``n2n-infer batch``); a foreign, unsafe or
tampered one is refused by name.

The packages here are made by hand (rdf.yaml, n2n's marker, the shipped ONNX file): the
runtime reads only the marker and the weights, so these tests need neither torch nor the
``bioimageio`` extra. ``tests/export/test_bioimageio.py`` runs real exported packages.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from n2n_infer import Denoiser, ModelLoadError
from n2n_infer import package as pkg
from n2n_infer.cli import main as infer_cli
from n2n_infer.package import MARKER, PackageError, PackageMarker, package_weights
from n2n_infer.registry import models_dir, resolve_model
from tests.conftest import REPO

SEEDLIKE = models_dir() / "seedlike.onnx"


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    """Each test extracts into its own cache folder."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("N2N_CACHE", str(folder))
    return folder / "packages"


def _marker(onnx_bytes: bytes, name: str = "seedlike.onnx", **changes: object) -> str:
    body = json.loads(
        PackageMarker(name, hashlib.sha256(onnx_bytes).hexdigest(), len(onnx_bytes)).to_json()
    )
    body["onnx"].update(changes.pop("onnx", {}))
    body.update(changes)
    return json.dumps(body)


def make_zip(path: Path, entries: dict[str, bytes | str]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return path


def n2n_entries(onnx_bytes: bytes | None = None) -> dict[str, bytes | str]:
    onnx_bytes = SEEDLIKE.read_bytes() if onnx_bytes is None else onnx_bytes
    return {
        "rdf.yaml": "type: model\nformat_version: 0.5.12\n",
        MARKER: _marker(onnx_bytes),
        "seedlike.onnx": onnx_bytes,
    }


@pytest.fixture
def zip_package(tmp_path):
    return make_zip(tmp_path / "seedlike.zip", n2n_entries())


def _image() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)


# --- packages n2n wrote run as their ONNX file ----------------------------------------------


def test_a_zip_package_runs_its_onnx_weights_with_the_same_outputs(zip_package, cache):
    from_package = Denoiser(zip_package, device="cpu")
    from_file = Denoiser(SEEDLIKE, device="cpu")
    assert from_package.path == cache / f"{hashlib.sha256(SEEDLIKE.read_bytes()).hexdigest()}.onnx"
    assert from_package.path.read_bytes() == SEEDLIKE.read_bytes()
    np.testing.assert_array_equal(from_package.denoise(_image()), from_file.denoise(_image()))
    assert from_package.info.name == from_file.info.name  # the model's own metadata


def test_the_extracted_weights_are_reused_and_a_tampered_cache_is_replaced(zip_package, cache):
    first = package_weights(zip_package)
    stamp = first.stat().st_mtime_ns
    assert package_weights(zip_package) == first and first.stat().st_mtime_ns == stamp
    first.write_bytes(b"not the model")
    assert package_weights(zip_package).read_bytes() == SEEDLIKE.read_bytes()
    assert sorted(p.name for p in cache.iterdir()) == [first.name]  # no temporary file left


def test_an_unpacked_folder_runs_in_place(tmp_path, zip_package):
    folder = tmp_path / "unpacked"
    with zipfile.ZipFile(zip_package) as z:
        z.extractall(folder)
    d = Denoiser(folder, device="cpu")
    assert d.path == folder / "seedlike.onnx"
    np.testing.assert_array_equal(
        d.denoise(_image()), Denoiser(SEEDLIKE, device="cpu").denoise(_image())
    )


def test_batch_accepts_a_package_as_model(tmp_path, zip_package):
    images = tmp_path / "in"
    images.mkdir()
    Image.fromarray(_image()).save(images / "a.png")
    outs = {}
    for label, model in (("package", zip_package), ("onnx", SEEDLIKE)):
        out = tmp_path / label
        result = CliRunner().invoke(
            infer_cli, ["batch", str(images), str(out), "--model", str(model), "--device", "cpu"]
        )
        assert result.exit_code == 0, result.output
        outs[label] = np.asarray(Image.open(out / "a.png"))
    np.testing.assert_array_equal(outs["package"], outs["onnx"])


def test_a_bundled_name_still_wins_over_a_folder_of_that_name(tmp_path, monkeypatch):
    (tmp_path / "seedlike").mkdir()
    monkeypatch.chdir(tmp_path)
    assert resolve_model("seedlike") == SEEDLIKE


def test_a_folder_that_is_not_a_package_is_still_refused_as_a_folder(tmp_path):
    with pytest.raises(ModelLoadError, match="is a folder, not a model"):
        Denoiser(tmp_path, device="cpu")


# --- refused by name ------------------------------------------------------------------------


def test_a_package_n2n_did_not_write_is_refused_by_name(tmp_path):
    foreign = make_zip(
        tmp_path / "other.zip",
        {"rdf.yaml": "type: model\n", "weights.onnx": SEEDLIKE.read_bytes()},
    )
    with pytest.raises(PackageError, match=r"a BioImage\.IO package that n2n did not write"):
        Denoiser(foreign, device="cpu")
    folder = tmp_path / "other"
    folder.mkdir()
    (folder / "rdf.yaml").write_text("type: model\n")
    with pytest.raises(PackageError, match="n2n did not write"):
        resolve_model(folder)


def test_a_zip_that_is_no_package_is_refused(tmp_path):
    plain = make_zip(tmp_path / "x.zip", {"a.txt": "hello"})
    with pytest.raises(PackageError, match=r"not a BioImage\.IO package: this zip has no rdf"):
        Denoiser(plain, device="cpu")


@pytest.mark.parametrize("name", ["../evil.onnx", "/etc/evil", "a\\..\\b", "C:/x", "a/../../b"])
def test_zip_slip_names_refuse_the_whole_package(tmp_path, name):
    entries = {**n2n_entries(), name: b"x"}
    with pytest.raises(PackageError, match="zip slip"):
        package_weights(make_zip(tmp_path / "slip.zip", entries))


def test_a_repeated_entry_is_refused(tmp_path):
    path = make_zip(tmp_path / "twice.zip", n2n_entries())
    with zipfile.ZipFile(path, "a") as z, pytest.warns(UserWarning, match="Duplicate name"):
        z.writestr("seedlike.onnx", b"other weights")
    with pytest.raises(PackageError, match="appears twice"):
        package_weights(path)


def test_too_many_entries_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(pkg, "MAX_ENTRIES", 3)
    with pytest.raises(PackageError, match="4 entries, more than the limit of 3"):
        package_weights(make_zip(tmp_path / "many.zip", {**n2n_entries(), "extra": "x"}))


def test_weights_that_do_not_match_their_checksum_are_refused_and_not_cached(tmp_path, cache):
    onnx_bytes = bytearray(SEEDLIKE.read_bytes())
    entries = n2n_entries()
    onnx_bytes[-10] ^= 0xFF  # same size, other bytes
    entries["seedlike.onnx"] = bytes(onnx_bytes)
    with pytest.raises(PackageError, match="the weights were changed; refused"):
        package_weights(make_zip(tmp_path / "tampered.zip", entries))
    assert not cache.exists() or not any(cache.iterdir())


def test_weights_larger_than_the_marker_states_are_refused_before_extraction(tmp_path, cache):
    entries = n2n_entries()
    entries["seedlike.onnx"] = SEEDLIKE.read_bytes() + b"\0" * (1 << 20)  # a bigger entry
    with pytest.raises(PackageError, match=r"seedlike.onnx is \d+ bytes; its n2n-package.json"):
        package_weights(make_zip(tmp_path / "big.zip", entries))
    assert not cache.exists()


def test_extraction_stops_at_the_stated_size(tmp_path, cache):
    """Even when the zip's own sizes agree with the marker, no more bytes than stated are
    written: the copy counts what it decompresses."""
    path = make_zip(tmp_path / "ok.zip", n2n_entries())
    marker = pkg.read_marker(_marker(SEEDLIKE.read_bytes()).encode(), str(path))
    small = PackageMarker(marker.onnx, marker.sha256, 1000)
    with zipfile.ZipFile(path) as z, pytest.raises(PackageError, match="expands past"):
        pkg._extract(z, z.getinfo("seedlike.onnx"), small, path, cache)
    assert [p.name for p in cache.iterdir()] == []


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"version": 2}, "version 2 is not supported by this n2n_infer"),
        ({"format": "other"}, "expected format 'n2n.bioimageio'"),
        ({"onnx": {"file": "../seedlike.onnx"}}, "expected a plain .onnx file name"),
        ({"onnx": {"sha256": "abc"}}, "expected 64 lowercase hex digits"),
        ({"onnx": {"bytes": 3 * 1024**3}}, "expected a size from 1 to"),
    ],
)
def test_a_marker_out_of_shape_is_refused(tmp_path, changes, message):
    entries = {**n2n_entries(), MARKER: _marker(SEEDLIKE.read_bytes(), **changes)}
    with pytest.raises(PackageError, match=message):
        package_weights(make_zip(tmp_path / "m.zip", entries))


def test_a_marker_that_is_not_json_is_refused(tmp_path):
    entries = {**n2n_entries(), MARKER: b"\xff{"}
    with pytest.raises(PackageError, match="is not valid JSON"):
        package_weights(make_zip(tmp_path / "m.zip", entries))


def test_a_folder_whose_weights_lead_outside_it_is_refused(tmp_path):
    folder = tmp_path / "pkg"
    folder.mkdir()
    (folder / "rdf.yaml").write_text("type: model\n")
    (folder / MARKER).write_text(_marker(SEEDLIKE.read_bytes()))
    (folder / "seedlike.onnx").symlink_to(SEEDLIKE)
    with pytest.raises(PackageError, match="expected a regular file inside the package folder"):
        package_weights(folder)


def test_a_truncated_zip_is_refused(tmp_path, zip_package):
    cut = tmp_path / "cut.zip"
    cut.write_bytes(zip_package.read_bytes()[:5000])
    with pytest.raises(PackageError, match="not a readable zip package"):
        Denoiser(cut, device="cpu")


def test_an_unwritable_cache_is_named(tmp_path, zip_package, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("N2N_CACHE", str(blocker))  # a file where the folder would be
    with pytest.raises(PackageError, match="set N2N_CACHE to a writable folder"):
        package_weights(zip_package)


def test_reading_a_package_loads_no_torch_and_no_yaml(zip_package):
    code = (
        "import sys\nfrom n2n_infer.registry import resolve_model\n"
        f"resolve_model({str(zip_package)!r})\n"
        "bad = [m for m in ('torch', 'yaml', 'ruyaml', 'bioimageio') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
