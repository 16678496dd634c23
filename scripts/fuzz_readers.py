"""Fuzz the image file readers: mutate valid files, check that read_file keeps its contract.

Valid seed files of every supported format and mode are built from seeded random
pixels (PNG 8/16-bit grey, grey+alpha, RGB, RGBA, palette; JPEG with EXIF and ICC;
TIFF 8/16-bit in strips and tiles, none/LZW/Deflate/PackBits, planar, float; WebP;
BMP; PPM). Each case mutates one of them (bit flips, truncation, inserted or deleted
bytes, interesting integers, PNG chunk edits with the CRC fixed, TIFF tag edits,
a block copied over another) and reads it with :func:`n2n_infer.imageio.read_file`,
which must return a valid :class:`~n2n_infer.imageio.ImageFile` or raise
:class:`~n2n_infer.errors.ImageError`; anything else is a finding.

Usage (from the repository root)::

    python scripts/fuzz_readers.py --cases 3000 --seed 1

prints the case count, the outcome counts and the slowest case, and exits 1 if any
case broke the contract. ``tests/infer/test_readers_fuzz.py`` runs a short version.
"""

from __future__ import annotations

import argparse
import io
import resource
import struct
import sys
import tempfile
import time
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

if __package__ in (None, ""):  # run as a script: make n2n_infer importable from a clone
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from n2n_infer import heif, imageio, png16
from n2n_infer.errors import ImageError

#: read_file's pixel limit in the fuzz run: bounds the memory of any accepted case.
MAX_PIXELS = 1 << 20
VALID_DTYPES = {np.dtype(t) for t in (np.uint8, np.uint16, np.float32, np.float64)}
VALID_MODES = {"L", "LA", "RGB", "RGBA", "I;16", "F"}
INTERESTING = [0, 1, 2, 7, 8, 15, 16, 255, 256, 0x7FFF, 0x8000, 0xFFFF, 0x10000]
INTERESTING += [0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 10000]


@dataclass(frozen=True)
class Finding:
    """A case that broke read_file's contract."""

    case: int
    seed_name: str
    mutation: str
    error: str


def _pillow(im: Image.Image, fmt: str, **options: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **options)
    return buf.getvalue()


def _tifffile(px: np.ndarray, **options: object) -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(buf, px, metadata=None, **options)
    return buf.getvalue()


def seed_files(seed: int = 0) -> list[tuple[str, bytes]]:
    """Valid small files of every supported format and mode: (name with suffix, bytes)."""
    rng = np.random.default_rng(seed)
    h, w = 13, 19
    rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    rgb16 = rng.integers(0, 65536, (h, w, 3), dtype=np.uint16)
    rgba16 = rng.integers(0, 65536, (h, w, 4), dtype=np.uint16)
    im = Image.fromarray(rgb)
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "fuzz"
    icc = b"\0\0\0\x20fake icc profile" + bytes(16)
    files = [
        ("l.png", _pillow(im.convert("L"), "PNG")),
        ("la.png", _pillow(im.convert("LA"), "PNG")),
        ("rgb.png", _pillow(im, "PNG", exif=exif)),
        ("rgba.png", _pillow(im.convert("RGBA"), "PNG")),
        ("p.png", _pillow(im.convert("P"), "PNG", transparency=3)),
        ("bit.png", _pillow(im.convert("1"), "PNG")),
        ("g16.png", _pillow(Image.fromarray(rgb16[..., 0]), "PNG")),
        ("rgb16.png", png16.encode_png16(rgb16, icc, exif.tobytes())),
        ("rgba16.png", png16.encode_png16(rgba16)),
        ("exif.jpg", _pillow(im, "JPEG", exif=exif, icc_profile=icc, quality=90)),
        ("prog.jpg", _pillow(im.convert("L"), "JPEG", progressive=True)),
        ("lossy.webp", _pillow(im, "WEBP", quality=80)),
        ("lossless.webp", _pillow(im.convert("RGBA"), "WEBP", lossless=True)),
        ("rgb.bmp", _pillow(im, "BMP")),
        ("p.bmp", _pillow(im.convert("P"), "BMP")),
        ("rgb.ppm", _pillow(im, "PPM")),
        ("l.ppm", _pillow(im.convert("L"), "PPM")),
        ("raw8.tif", _pillow(im, "TIFF")),
        ("lzw8.tif", _pillow(im, "TIFF", compression="tiff_lzw")),
        ("zip8.tif", _pillow(im.convert("L"), "TIFF", compression="tiff_deflate")),
        ("pack8.tif", _pillow(im, "TIFF", compression="packbits")),
        ("g16.tif", _pillow(Image.fromarray(rgb16[..., 1]), "TIFF")),
        (
            "f32.tif",
            _pillow(Image.fromarray((rgb16[..., 2] / 65535.0).astype(np.float32), "F"), "TIFF"),
        ),
        ("rgb16.tif", _tifffile(rgb16, photometric="rgb", compression="zlib", predictor=True)),
        ("lzw16.tif", _tifffile(rgb16, photometric="rgb", compression="lzw", rowsperstrip=4)),
        ("raw16.tif", _tifffile(rgba16, photometric="rgb", extrasamples=("unassalpha",))),
        ("tile16.tif", _tifffile(rgb16, photometric="rgb", tile=(16, 16), compression="zlib")),
        (
            "planar16.tif",
            _tifffile(np.moveaxis(rgb16, 2, 0), photometric="rgb", planarconfig="separate"),
        ),
        ("pack16.tif", _tifffile(rgb16, photometric="rgb", compression="packbits")),
        ("big16.tif", _tifffile(rgb16, photometric="rgb", bigtiff=True)),
    ]
    if heif.HAS_HEIF:  # the heic extra
        files += [
            ("rgb.heic", heif.encode_heif(rgb, icc, exif.tobytes())),
            ("rgba10.heic", heif.encode_heif(rgba16, encoder={"bit_depth": 10, "chroma": 444})),
            ("l.heic", heif.encode_heif(rgb[..., 0])),
        ]
    return files


def _flip_bits(data: bytearray, rng: np.random.Generator) -> str:
    for _ in range(int(rng.integers(1, 9))):
        i = int(rng.integers(0, len(data)))
        data[i] ^= 1 << int(rng.integers(0, 8))
    return "bit flips"


def _set_bytes(data: bytearray, rng: np.random.Generator) -> str:
    for _ in range(int(rng.integers(1, 5))):
        data[int(rng.integers(0, len(data)))] = int(rng.integers(0, 256))
    return "random bytes"


def _interesting(data: bytearray, rng: np.random.Generator) -> str:
    i = int(rng.integers(0, max(1, len(data) - 4)))
    value = INTERESTING[int(rng.integers(0, len(INTERESTING)))]
    width, order = [(2, "<H"), (2, ">H"), (4, "<I"), (4, ">I")][int(rng.integers(0, 4))]
    data[i : i + width] = struct.pack(order, value & ((1 << 8 * width) - 1))
    return f"int {value} at {i}"


def _copy_block(data: bytearray, rng: np.random.Generator) -> str:
    n = int(rng.integers(1, 64))
    src, dst = (int(x) for x in rng.integers(0, max(1, len(data) - n), 2))
    data[dst : dst + n] = data[src : src + n]
    return "block copied"


def _png_chunk_edit(data: bytearray, rng: np.random.Generator) -> str:
    """Change a chunk's body (IHDR fields, or random bytes) and fix its CRC."""
    chunks, pos = [], 8
    while pos + 12 <= len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        if pos + 12 + length > len(data):
            break
        chunks.append((pos, length))
        pos += 12 + length
    if not chunks:
        return _flip_bits(data, rng)
    pos, length = chunks[int(rng.integers(0, len(chunks)))]
    body = pos + 8
    if data[pos + 4 : pos + 8] == b"IHDR" and rng.random() < 0.7:
        field, fmt = [(0, ">I"), (4, ">I"), (8, "B"), (9, "B"), (12, "B")][int(rng.integers(0, 5))]
        value = INTERESTING[int(rng.integers(0, len(INTERESTING)))]
        struct.pack_into(fmt, data, body + field, value & (0xFF if fmt == "B" else 0xFFFFFFFF))
        what = f"IHDR field {field} = {value}"
    elif length:
        data[body + int(rng.integers(0, length))] = int(rng.integers(0, 256))
        what = f"chunk {bytes(data[pos + 4 : pos + 8])!r} byte"
    else:
        return _flip_bits(data, rng)
    crc = zlib.crc32(bytes(data[pos + 4 : body + length]))
    struct.pack_into(">I", data, body + length, crc)
    return f"{what}, CRC fixed"


def _tiff_tag_edit(data: bytearray, rng: np.random.Generator) -> str:
    """Change the type, count or value of one entry of a classic TIFF's first IFD."""
    order = "<" if data[:2] == b"II" else ">"
    if len(data) < 8 or data[2:4] not in (b"*\0", b"\0*"):
        return _interesting(data, rng)
    (ifd,) = struct.unpack_from(order + "I", data, 4)
    if ifd + 2 > len(data):
        return _interesting(data, rng)
    (count,) = struct.unpack_from(order + "H", data, ifd)
    if count == 0 or ifd + 2 + 12 * count > len(data):
        return _interesting(data, rng)
    at = ifd + 2 + 12 * int(rng.integers(0, count))
    (tag,) = struct.unpack_from(order + "H", data, at)
    part = int(rng.integers(0, 3))
    value = INTERESTING[int(rng.integers(0, len(INTERESTING)))]
    if part == 0:
        struct.pack_into(order + "H", data, at + 2, int(rng.integers(0, 19)))
        return f"tag {tag} type"
    struct.pack_into(order + "I", data, at + 4 * part, value)
    return f"tag {tag} {'count' if part == 1 else 'value'} = {value}"


def _truncate(data: bytearray, rng: np.random.Generator) -> str:
    cut = int(rng.integers(0, len(data)))
    del data[cut:]
    return f"cut at {cut}"


def _insert_delete(data: bytearray, rng: np.random.Generator) -> str:
    i, n = int(rng.integers(0, len(data))), int(rng.integers(1, 16))
    if rng.random() < 0.5:
        del data[i : i + n]
        return f"{n} bytes deleted at {i}"
    data[i:i] = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
    return f"{n} bytes inserted at {i}"


MUTATIONS: list[Callable[[bytearray, np.random.Generator], str]] = [
    _flip_bits,
    _set_bytes,
    _interesting,
    _copy_block,
    _truncate,
    _insert_delete,
]


def mutate(name: str, data: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    """One to three mutations of ``data`` (format-aware ones for PNG and TIFF)."""
    out = bytearray(data)
    kinds = list(MUTATIONS)
    if name.endswith(".png"):
        kinds += [_png_chunk_edit] * 3
    if name.endswith(".tif"):
        kinds += [_tiff_tag_edit] * 3
    done = []
    for _ in range(int(rng.integers(1, 4))):
        if not out:
            break
        done.append(kinds[int(rng.integers(0, len(kinds)))](out, rng))
    return bytes(out), "; ".join(done)


def check_result(loaded: imageio.ImageFile, max_pixels: int) -> None:
    """Raise AssertionError unless ``loaded`` is something the denoiser accepts."""
    px = loaded.pixels
    assert isinstance(px, np.ndarray), type(px)
    assert px.dtype in VALID_DTYPES, px.dtype
    assert px.ndim == 2 or (px.ndim == 3 and px.shape[2] in (3, 4)), px.shape
    assert 0 < px.shape[0] * px.shape[1] <= max_pixels, px.shape
    assert loaded.mode in VALID_MODES, loaded.mode
    if px.dtype.kind == "f":
        assert np.isfinite(px).all() and px.min() >= 0 and px.max() <= 1
    assert loaded.icc_profile is None or isinstance(loaded.icc_profile, bytes)
    assert loaded.exif is None or isinstance(loaded.exif, bytes)


def run_case(path: Path, max_pixels: int = MAX_PIXELS) -> str:
    """Read ``path``: "ok", "refused", or raise (a finding)."""
    try:
        loaded = imageio.read_file(path, max_pixels)
    except ImageError as exc:
        assert str(path) in str(exc), f"error does not name the file: {exc}"
        return "refused"
    check_result(loaded, max_pixels)
    return "ok"


@dataclass
class FuzzReport:
    """Outcome counts of a fuzz run, its findings and its slowest case."""

    cases: int
    outcomes: Counter[str]
    findings: list[Finding]
    slowest_s: float
    slowest: str


def fuzz(cases: int, seed: int, folder: Path) -> FuzzReport:
    """Run ``cases`` mutated files (plus every unmutated seed file) through read_file."""
    seeds = seed_files(seed)
    rng = np.random.default_rng(seed)
    outcomes: Counter[str] = Counter()
    findings: list[Finding] = []
    slowest, slowest_s = "", 0.0
    for i in range(len(seeds) + cases):
        name, data = seeds[i % len(seeds)]
        mutation = "none"
        if i >= len(seeds):
            name, data = seeds[int(rng.integers(0, len(seeds)))]
            data, mutation = mutate(name, data, rng)
        path = folder / f"case{i}{Path(name).suffix}"
        path.write_bytes(data)
        start = time.perf_counter()
        try:
            outcome = run_case(path)
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt):
                raise
            outcome = "finding"
            findings.append(Finding(i, name, mutation, f"{type(exc).__name__}: {exc}"))
        seconds = time.perf_counter() - start
        if i < len(seeds) and outcome != "ok":
            findings.append(Finding(i, name, mutation, f"valid seed file {outcome}"))
        if seconds > slowest_s:
            slowest, slowest_s = f"case {i} ({name}: {mutation})", seconds
        outcomes[outcome] += 1
        path.unlink()
    return FuzzReport(len(seeds) + cases, outcomes, findings, slowest_s, slowest)


def main(argv: list[str] | None = None) -> int:
    """Command line: ``--cases N --seed S [--memory-gib G]``; exit 1 on any finding."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=3000, help="mutated files to read")
    parser.add_argument("--seed", type=int, default=1, help="seed of pixels and mutations")
    parser.add_argument(
        "--memory-gib", type=float, default=4.0, help="address-space limit of this process"
    )
    args = parser.parse_args(argv)
    limit = int(args.memory_gib * (1 << 30))
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        report = fuzz(args.cases, args.seed, Path(folder))
    elapsed = time.perf_counter() - start
    counts = ", ".join(f"{k} {v}" for k, v in sorted(report.outcomes.items()))
    print(f"{report.cases} cases (seed {args.seed}) in {elapsed:.1f} s: {counts}")
    print(f"slowest: {report.slowest_s:.3f} s, {report.slowest}")
    for f in report.findings:
        print(f"FINDING case {f.case} ({f.seed_name}: {f.mutation}): {f.error}")
    return 1 if report.findings else 0


if __name__ == "__main__":
    sys.exit(main())
