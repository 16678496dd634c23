"""Fuzz suite over the file readers, bounded for CI (a few seconds).

Mutated PNG/JPEG/TIFF/WebP/BMP files (and HEIC, with the heic extra) of every
supported mode (built from seeded random pixels by ``scripts/fuzz_readers.py``) must
each give a valid ImageFile or an ImageError naming the file; never another exception.
The hand-made files of issue 20 live beside the readers' own tests: test_png16.py
(short rows, 10000×9999 declared, 1×200000 Paeth), test_tiff16.py (tiles sharing one
blob, tiny file declaring a huge image) and test_read_modes.py (float TIFF, modes,
mistyped tags, warnings as errors).
"""

import warnings

import numpy as np
import pytest

from n2n_infer import imageio
from n2n_infer.errors import ImageError
from n2n_infer.heif import HAS_HEIF
from scripts.fuzz_readers import MAX_PIXELS, fuzz, mutate, run_case, seed_files

#: Mutated files per CI run (about 3 s on a 2-core VM); the script runs thousands.
CI_CASES = 1500
#: Generous bound on one file's read (the slowest case takes about 0.1 s).
MAX_CASE_SECONDS = 10.0


def test_every_seed_file_is_valid_and_read(tmp_path):
    seeds = seed_files(0)
    suffixes = {name.rsplit(".", 1)[1] for name, _ in seeds}
    heic = {"heic"} if HAS_HEIF else set()
    assert suffixes == {"png", "jpg", "tif", "webp", "bmp", "ppm"} | heic
    for name, data in seeds:
        path = tmp_path / name
        path.write_bytes(data)
        assert run_case(path) == "ok", name


def test_mutations_are_deterministic():
    name, data = seed_files(0)[7]
    a = [mutate(name, data, np.random.default_rng(5)) for _ in range(3)]
    b = [mutate(name, data, np.random.default_rng(5)) for _ in range(3)]
    assert a == b and a[0][0] != data


def test_mutated_files_give_an_image_or_an_image_error(tmp_path):
    report = fuzz(CI_CASES, seed=0, folder=tmp_path)
    assert report.findings == []
    assert report.outcomes["ok"] > 100 and report.outcomes["refused"] > 500
    assert report.slowest_s < MAX_CASE_SECONDS, report.slowest


def test_mutated_files_under_warnings_as_errors(tmp_path):
    """PYTHONWARNINGS=error turns decoder warnings into exceptions: still ImageError."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = fuzz(300, seed=1, folder=tmp_path)
    assert report.findings == []


@pytest.mark.parametrize("limit", [1, 100])
def test_pixel_limit_is_kept_by_every_reader(tmp_path, limit):
    for name, data in seed_files(0):
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(ImageError, match=f"exceeds the limit of {limit}"):
            imageio.read_file(path, max_pixels=limit)
    assert MAX_PIXELS > 13 * 19
