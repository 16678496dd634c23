"""The host-side conversions around the model call: :func:`to_unit` written into a 3×H×W
buffer gives exactly the values of its plain H×W×C result, and :func:`write_rows` gives
exactly what converting the H×W×C rows with :func:`from_unit` gives."""

from __future__ import annotations

import numpy as np
import pytest

from n2n_infer.arrays import as_image, from_unit, new_output, to_unit, write_rows


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64, ">u2"])
def test_to_unit_into_a_chw_buffer_equals_to_unit_transposed(dtype: str) -> None:
    rng = np.random.default_rng(0)
    dt = np.dtype(dtype)
    if dt.kind == "u":
        px = rng.integers(0, np.iinfo(dt).max + 1, (13, 17, 3)).astype(dt)
    else:
        px = rng.random((13, 17, 3)).astype(dt)
    img = as_image(px, 0, "hwc")
    out = np.empty((3, 13, 17), np.float32)
    assert to_unit(img.rgb, img.levels, out) is out
    assert np.array_equal(out, to_unit(img.rgb, img.levels).transpose(2, 0, 1))


@pytest.mark.parametrize(
    ("dtype", "channels"),
    [(np.uint8, 3), (np.uint8, 4), (np.uint16, 3), (np.float32, 3), (np.float64, 3),
     (np.uint8, 1), (np.uint8, 0)],
)  # fmt: skip
def test_write_rows_equals_from_unit_on_hwc_rows(dtype: type, channels: int) -> None:
    rng = np.random.default_rng(1)
    shape = (20, 30) if channels == 0 else (20, 30, channels)
    if np.dtype(dtype).kind == "u":
        original = rng.integers(0, 200, shape).astype(dtype)
    else:
        original = rng.random(shape).astype(dtype)
    img = as_image(original, 0, "hwc")
    # out of range, exact halves (rint rounds them to even) and ordinary values
    chw = rng.random((3, 12, 30), dtype=np.float32) * 1.4 - 0.2
    chw[0, 0, :4] = np.float32([0.5, 1.5, 2.5, 3.5]) / 255
    chw_copy = chw.copy()
    out = new_output(img)
    write_rows(img, out, 5, chw)
    hwc = chw.transpose(1, 2, 0)
    if channels in (0, 1):
        grey = from_unit(hwc.mean(axis=2), out.dtype, img.levels)
        assert np.array_equal(out[5:17].reshape(grey.shape), grey)
    else:
        assert np.array_equal(out[5:17, :, :3], from_unit(hwc, out.dtype, img.levels))
    if channels == 4:
        assert np.array_equal(out[:, :, 3], original[:, :, 3])  # alpha copied, not written
    assert np.array_equal(chw, chw_copy)  # the caller's rows are not modified
