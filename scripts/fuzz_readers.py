"""Fuzz the image file readers: mutate valid files, check that read_file keeps its contract.

Valid seed files of every supported format and mode are built from seeded random
pixels (PNG 8/16-bit grey, grey+alpha, RGB, RGBA, palette; JPEG with EXIF and ICC;
TIFF 8/16-bit in strips and tiles, none/LZW/Deflate/PackBits, planar, float; WebP;
BMP; PGM/PPM binary and plain, maxval 5 to 65535). Each case mutates one of them
(bit flips, truncation, inserted or deleted bytes, interesting integers, PNG chunk
edits with the CRC fixed, TIFF tag edits, a block copied over another) and reads it
with :func:`n2n_infer.imageio.read_file`, which must return a valid
:class:`~n2n_infer.imageio.ImageFile` or raise
:class:`~n2n_infer.errors.ImageError`; anything else is a finding.

The bomb cases (:func:`bomb_cases`) are files that must not be read whole: a
small valid image (or just its header) followed by gigabytes of sparse zeros,
or a header declaring a chunk, box, tag or image far larger than the file or
than the image can need; and special files (a FIFO, a folder, a device). Each
is read in one child process (:func:`run_bombs`) whose peak resident memory
must stay far below the files' size, with the right result: an image, or an
ImageError saying why.

Usage (from the repository root)::

    python scripts/fuzz_readers.py --cases 3000 --seed 1
    python scripts/fuzz_readers.py --bombs

prints the case count, the outcome counts and the slowest case (or each bomb
case's outcome and the peak memory), and exits 1 if any case broke the contract.
``tests/infer/test_readers_fuzz.py`` runs a short version, and
``tests/infer/test_readers_bounds.py`` the bomb cases.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import struct
import subprocess
import sys
import tempfile
import threading
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


def _netpbm(magic: str, samples: np.ndarray, maxval: int, comment: str = "fuzz") -> bytes:
    """A PGM/PPM of ``samples`` (0..maxval), binary (P5/P6) or plain (P2/P3)."""
    h, w = samples.shape[:2]
    header = f"{magic}\n# {comment}\n{w} {h}\n{maxval}\n".encode("ascii")
    if magic in ("P2", "P3"):
        rows = (" ".join(str(int(v)) for v in row.reshape(-1)) for row in samples)
        return header + "\n".join(rows).encode("ascii") + b"\n"
    return header + samples.astype(">u2" if maxval > 255 else np.uint8).tobytes()


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
        ("g12.ppm", _netpbm("P5", rgb16[..., 0] >> 4, 4095)),  # PGM content, .ppm name
        ("rgb16.ppm", _netpbm("P6", rgb16, 65535)),
        ("g5.ppm", _netpbm("P5", rgb[..., 1] % 6, 5)),
        ("plain.ppm", _netpbm("P3", rgb16 % 1001, 1000)),
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


# --- bombs: files that must not be read whole ---------------------------------------------

#: The size of a bomb case's sparse file: far more than any case may read or hold.
BOMB_BYTES = 3 << 30
#: Peak resident memory of the child process that reads every bomb case (its imports
#: take about 60 MB; a case read whole would take gigabytes).
BOMB_MAX_RSS_MB = 400
#: Seconds the child may take for all the cases (each takes well under a second).
BOMB_TIMEOUT_S = 120
#: The child's address-space limit: a reader that would read a case whole fails (out of
#: memory) instead of taking gigabytes of the machine's memory.
BOMB_ADDRESS_SPACE = 2 << 30
#: The child: reads each path of its arguments, prints one JSON line per path.
#: Its peak memory: the kernel's high-water mark, reset at the start (a child forked from a
#: large process, pytest's, inherits that process's peak in ru_maxrss, even after exec).
_BOMB_READER = """
import json, resource, sys, time
limit = int(sys.argv[1])
try:
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
except (AttributeError, ValueError, OSError):  # not enforced everywhere
    pass
def peak_mb():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
try:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak resident set size (Linux 4.0+)
except OSError:
    pass
from n2n_infer import imageio
for path in sys.argv[2:]:
    start = time.perf_counter()
    try:
        loaded = imageio.read_file(path)
        outcome, message = "ok", "; ".join(loaded.notes)
    except Exception as exc:
        outcome, message = type(exc).__name__, str(exc)
    rss = peak_mb()
    seconds = round(time.perf_counter() - start, 3)
    print(json.dumps({"path": path, "outcome": outcome, "message": message, "rss_mb": rss,
                      "seconds": seconds}), flush=True)
"""


@dataclass(frozen=True)
class Bomb:
    """A file that must not be read whole.

    Attributes:
        name: its file name (the suffix names the format).
        data: its first bytes (the rest, up to ``size``, are sparse zeros).
        size: its size in bytes.
        expect: ``"ok"`` (an image, read without its tail), or a piece of the
            ImageError's message.
        special: ``"fifo"``, ``"folder"`` or ``"device"`` (a link to /dev/zero)
            instead of a file.
    """

    name: str
    data: bytes = b""
    size: int = BOMB_BYTES
    expect: str = "ok"
    special: str = ""


@dataclass(frozen=True)
class BombResult:
    """What reading a bomb case gave: its outcome ("ok", an exception's name, or
    "not run" when the child stopped before it), the message or notes, the child's
    peak resident memory so far (MB) and the seconds the read took."""

    bomb: Bomb
    outcome: str
    message: str
    rss_mb: int
    seconds: float

    @property
    def passed(self) -> bool:
        """The right outcome, within the memory bound."""
        if self.rss_mb > BOMB_MAX_RSS_MB:
            return False
        if self.bomb.expect == "ok":
            return self.outcome == "ok"
        return self.outcome == "ImageError" and self.bomb.expect in self.message


def _with(data: bytes, at: int, value: bytes) -> bytes:
    return data[:at] + value + data[at + len(value) :]


def _png_chunk(kind: bytes, length: int, body: bytes = b"") -> bytes:
    return struct.pack(">I4s", length, kind) + body


def _box_at(data: bytes, kind: bytes) -> int:
    """The offset of the top-level ISOBMFF box ``kind`` of ``data``."""
    pos = 0
    while pos + 8 <= len(data):
        if data[pos + 4 : pos + 8] == kind:
            return pos
        pos += int.from_bytes(data[pos : pos + 4], "big")
    raise ValueError(f"no {kind!r} box")


def _tiff_with_entry(tag: int, kind: int, count: int) -> bytes:
    """A classic little-endian 16×16 grey TIFF whose IFD has ``tag`` with ``count``
    values of ``kind`` at offset 8192 (inside a sparse file)."""
    entries = {256: (3, 1, 16), 257: (3, 1, 16), 258: (3, 1, 8), 259: (3, 1, 1),
               262: (3, 1, 1), 273: (4, 1, 4096), 277: (3, 1, 1), 278: (3, 1, 16),
               279: (4, 1, 256)}  # fmt: skip
    entries[tag] = (kind, count, 8192)
    ifd = struct.pack("<H", len(entries))
    ifd += b"".join(struct.pack("<HHII", t, *entries[t]) for t in sorted(entries))
    return b"II*\0" + struct.pack("<I", 8) + ifd + bytes(4)


def bomb_cases(seed: int = 0) -> list[Bomb]:
    """The bomb cases: every reader's format, each with a sparse tail or a header that
    declares far more than the file or the image can need; and special files."""
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 256, (16, 24, 3), dtype=np.uint8)
    im = Image.fromarray(rgb)
    png, jpeg = _pillow(im, "PNG"), _pillow(im, "JPEG")
    prog = _pillow(im, "JPEG", progressive=True)
    ihdr = png[: len(png16.SIGNATURE) + 25]
    sos = jpeg.index(b"\xff\xda")
    webp = _pillow(im, "WEBP")
    bombs = [
        Bomb("tail.png", png),
        Bomb("idat.png", ihdr + _png_chunk(b"IDAT", 0x7FFFFFF0), expect="more than its 24×16"),
        Bomb("text.png", ihdr + _png_chunk(b"tEXt", 0x7FFFFFF0), expect="other than image data"),
        Bomb("zeros.png", ihdr, expect="invalid chunk type"),
        Bomb("tail.jpg", jpeg),
        Bomb("tail-progressive.jpg", prog),
        Bomb("tail.webp", webp),
        Bomb("riff.webp", _with(webp, 4, struct.pack("<I", 0xFFFFFFF0)), expect="canvas can need"),
        Bomb("tail.bmp", _pillow(im, "BMP")),
        Bomb("tail.tif", _pillow(im, "TIFF")),
        Bomb("description.tif", _tiff_with_entry(270, 2, 0x7FFFFFF0), expect="tag values of more"),
        Bomb("strips.tif", _tiff_with_entry(273, 4, 0x10000000), expect="far more than its size"),
        Bomb("tail.ppm", _netpbm("P6", rgb.astype(np.uint16) * 16, 4095)),
        Bomb("declared.ppm", b"P6\n20000 5000\n65535\n" + bytes(64), 100, expect="truncated PPM"),
        Bomb("plain.pgm", b"P2\n4000 4000\n255\n1 2 3\n", expect="malformed plain PGM"),
        Bomb("fifo.png", special="fifo", expect="not a regular file (a FIFO)"),
        Bomb("folder.png", special="folder", expect="not a regular file (a folder)"),
    ]
    if os.path.exists("/dev/zero"):
        bombs.append(Bomb("zero.png", special="device", expect="(a character device)"))
    if imageio.HAS_AVIF:
        avif = _pillow(im, "AVIF")
        mdat = _box_at(avif, b"mdat")
        huge = _with(avif, mdat, struct.pack(">I", BOMB_BYTES - mdat))  # to the file's end
        bombs += [Bomb("tail.avif", avif), Bomb("mdat.avif", huge, expect="boxes hold")]
    if heif.HAS_HEIF:
        heic = heif.encode_heif(rgb)
        mdat = _box_at(heic, b"mdat")
        huge = _with(heic, mdat, struct.pack(">I", BOMB_BYTES - mdat))
        bombs += [
            Bomb("tail.heic", heic, expect="bytes after the last HEIF box"),
            Bomb("mdat.heic", huge, expect="boxes hold"),
        ]
    bombs += [  # last: without bounds, Pillow walks 3 GB of zeros for minutes
        Bomb("header.jpg", jpeg[: sos - 20], expect="bytes that are not markers"),
        Bomb("scan.jpg", prog[: prog.index(b"\xff\xda") + 40], expect="its header allows"),
    ]
    return bombs


def write_bomb(bomb: Bomb, folder: Path) -> Path:
    """Make ``bomb``'s file (sparse: only its first bytes are written) in ``folder``."""
    path = folder / bomb.name
    if bomb.special == "fifo":
        os.mkfifo(path)
    elif bomb.special == "folder":
        path.mkdir()
    elif bomb.special == "device":
        path.symlink_to("/dev/zero")
    else:
        with open(path, "wb") as f:
            f.write(bomb.data)
            f.truncate(max(bomb.size, len(bomb.data)))
    return path


def run_bombs(
    bombs: list[Bomb], folder: Path, timeout_s: float = BOMB_TIMEOUT_S
) -> list[BombResult]:
    """Read every bomb case in one child process; its results, in order (a case the child
    did not finish within ``timeout_s``, and those after it: "not run")."""
    if not hasattr(os, "mkfifo"):
        bombs = [b for b in bombs if b.special != "fifo"]
    paths = [str(write_bomb(b, folder)) for b in bombs]
    root = str(Path(__file__).resolve().parent.parent)
    path_list = [root, *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path_list)}
    args = [sys.executable, "-c", _BOMB_READER, str(BOMB_ADDRESS_SPACE), *paths]
    lines: list[str] = []
    with subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                          env=env) as child:  # fmt: skip
        reader = threading.Thread(target=lambda: lines.extend(child.stdout or ()), daemon=True)
        reader.start()
        try:
            child.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:  # the cases read so far keep their results
            child.kill()
            child.wait()
        reader.join(timeout=10)
    done = "".join(lines)
    rows = {r["path"]: r for r in (json.loads(line) for line in done.splitlines() if line)}
    results = []
    for bomb, path in zip(bombs, paths, strict=True):
        r = rows.get(path, {"outcome": "not run", "message": "", "rss_mb": 0, "seconds": 0.0})
        results.append(BombResult(bomb, r["outcome"], r["message"], r["rss_mb"], r["seconds"]))
    return results


def main(argv: list[str] | None = None) -> int:
    """Command line: ``--cases N --seed S [--memory-gib G]``, or ``--bombs``; exit 1 on any
    finding."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=3000, help="mutated files to read")
    parser.add_argument("--seed", type=int, default=1, help="seed of pixels and mutations")
    parser.add_argument(
        "--memory-gib", type=float, default=4.0, help="address-space limit of this process"
    )
    parser.add_argument(
        "--bombs", action="store_true", help="read the bomb cases instead (sparse files)"
    )
    args = parser.parse_args(argv)
    if args.bombs:
        with tempfile.TemporaryDirectory() as folder:
            results = run_bombs(bomb_cases(args.seed), Path(folder))
        for r in results:
            verdict = "ok  " if r.passed else "FAIL"
            print(f"{verdict} {r.bomb.name}: {r.outcome} {r.rss_mb} MB {r.seconds} s {r.message}")
        return 0 if all(r.passed for r in results) else 1
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
