"""BioImage.IO model packages written by ``n2n-export bioimageio``: their ONNX weights, found
and checked without torch, YAML or any code from the package.

A package is a zip file or an unpacked folder holding ``rdf.yaml`` (the BioImage.IO
description), the weights and their test tensors. ``n2n-export bioimageio`` adds one more
file, :data:`MARKER` (JSON), that names the ONNX weights, their size and their sha256. The
runtime reads only that file: it needs no YAML parser, and a package n2n did not write
(no marker) is refused by name, since the runtime runs a model with the processing that
its own metadata describes (stride, levels, grey phases), which only n2n's ONNX files
carry. The weights then run as the ONNX file they are, with the same outputs.

A zip is untrusted input. It is refused whole when an entry's name could escape a folder
(absolute, ``..``, a backslash, a drive letter: "zip slip"), when names repeat, when it
holds more than :data:`MAX_ENTRIES` entries, or when an entry is encrypted. Nothing is
extracted under a name from the zip: the ONNX weights (and only they) are streamed to
``<cache>/packages/<sha256>.onnx`` (``$N2N_CACHE``, else ``~/.cache/n2n``: the runtime's
cache folder), at most the size the marker states (at most :data:`MAX_ONNX_BYTES`), hashed
on the way and written atomically: a file whose bytes do not hash to the marker's sha256
is never put in place, so a decompression bomb stops at the stated size and a tampered
file is refused. The cached file is checked again (sha256) each time it is reused.
A folder's weights are checked in place (regular file inside the folder, size, sha256)
and run from there.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from n2n_infer.errors import ModelLoadError
from n2n_infer.files import sha256_file, write_atomic

__all__ = [
    "MARKER",
    "PACKAGE_FORMAT",
    "PACKAGE_VERSION",
    "PackageError",
    "PackageMarker",
    "is_package",
    "package_weights",
    "read_marker",
]

log = logging.getLogger(__name__)

#: The file that ``n2n-export bioimageio`` adds to a package: which ONNX file n2n wrote.
MARKER = "n2n-package.json"
#: The marker's ``format`` value, and the marker versions this runtime reads.
PACKAGE_FORMAT = "n2n.bioimageio"
PACKAGE_VERSION = 1
#: The names a BioImage.IO description has in a package.
RDF_NAMES = ("rdf.yaml", "bioimageio.yaml")
#: Bounds on what a package may hold: entries, the marker's bytes, the ONNX weights' bytes
#: (one ONNX file with its weights inside cannot pass protobuf's 2 GiB).
MAX_ENTRIES = 1000
MAX_MARKER_BYTES = 64 * 1024
MAX_ONNX_BYTES = 2 * 1024**3
#: Bytes read at a time while the weights are extracted.
_CHUNK = 1 << 20
_SHA256 = re.compile(r"[0-9a-f]{64}")
#: A plain file name: no folder part, no drive, not "." or "..", no control characters.
_PLAIN_NAME = re.compile(r"[^/\\:\x00-\x1f]+")
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


class PackageError(ModelLoadError):
    """A BioImage.IO package that the runtime cannot run: not one, not written by n2n,
    unsafe (zip slip, too large, encrypted) or with weights that do not match their
    checksum. The message names the package, what was expected and what was found."""


@dataclass(frozen=True)
class PackageMarker:
    """What :data:`MARKER` says: the ONNX weights' file name in the package, sha256, size."""

    onnx: str
    sha256: str
    size: int
    n2n_version: str = ""

    def to_json(self) -> str:
        """The marker file's text."""
        body = {
            "format": PACKAGE_FORMAT,
            "version": PACKAGE_VERSION,
            "onnx": {"file": self.onnx, "sha256": self.sha256, "bytes": self.size},
            "n2n": self.n2n_version,
        }
        return json.dumps(body, indent=2) + "\n"


def is_package(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` looks like a package: a folder holding a BioImage.IO description or
    :data:`MARKER`, or a file that starts like a zip archive (an ONNX file never does).
    Says nothing about whether it is valid (:func:`package_weights` checks that)."""
    path = Path(path)
    if path.is_dir():
        return any((path / name).is_file() for name in (*RDF_NAMES, MARKER))
    try:
        with open(path, "rb") as f:
            return f.read(4) in _ZIP_MAGIC
    except OSError:
        return False


def package_weights(
    path: str | os.PathLike[str], cache: str | os.PathLike[str] | None = None
) -> Path:
    """The ONNX file of the package ``path`` (zip or folder) that n2n wrote, checked.

    A zip's weights are extracted once into ``cache`` (default: the runtime's cache folder,
    ``packages/`` under ``$N2N_CACHE`` or ``~/.cache/n2n``) as ``<sha256>.onnx``; a
    folder's are used in place. See the module's text for the checks.

    Raises:
        PackageError: not a package, not written by n2n, unsafe, or weights that do not
            match the marker; the message names the package.
    """
    path = Path(path)
    if path.is_dir():
        return _folder_weights(path)
    return _zip_weights(path, Path(cache) if cache is not None else _default_cache())


def read_marker(text: bytes, where: str) -> PackageMarker:
    """Parse and check a marker's bytes (``where`` names the package in messages).

    Raises:
        PackageError: not JSON, another format, a newer version, or fields out of shape.
    """
    try:
        body = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise PackageError(f"{where}: {MARKER} is not valid JSON") from None
    if not isinstance(body, dict) or body.get("format") != PACKAGE_FORMAT:
        raise PackageError(f"{where}: {MARKER}: expected format {PACKAGE_FORMAT!r}")
    version = body.get("version")
    if not _is_int(version) or not 1 <= version <= PACKAGE_VERSION:
        raise PackageError(
            f"{where}: {MARKER} version {_short(version)} is not supported by this n2n_infer "
            f"(supports 1..{PACKAGE_VERSION}); upgrade n2n_infer or re-export the package"
        )
    onnx = body.get("onnx")
    if not isinstance(onnx, dict):
        raise PackageError(f"{where}: {MARKER}: expected an object 'onnx', found {_short(onnx)}")
    name, sha, size = onnx.get("file"), onnx.get("sha256"), onnx.get("bytes")
    if not _plain_name(name) or not str(name).endswith(".onnx"):
        raise PackageError(
            f"{where}: {MARKER}: onnx.file {_short(name)}: expected a plain .onnx file name"
        )
    if not isinstance(sha, str) or not _SHA256.fullmatch(sha):
        raise PackageError(
            f"{where}: {MARKER}: onnx.sha256 {_short(sha)}: expected 64 lowercase hex digits"
        )
    if not _is_int(size) or not 0 < size <= MAX_ONNX_BYTES:
        raise PackageError(
            f"{where}: {MARKER}: onnx.bytes {_short(size)}: expected a size from 1 to "
            f"{MAX_ONNX_BYTES} bytes"
        )
    return PackageMarker(str(name), sha, int(size), str(body.get("n2n", "")))


# --- folders --------------------------------------------------------------------------------


def _folder_weights(folder: Path) -> Path:
    marker_path = folder / MARKER
    if not marker_path.is_file():
        raise _missing_marker(folder, any((folder / n).is_file() for n in RDF_NAMES), "folder")
    if marker_path.stat().st_size > MAX_MARKER_BYTES:
        raise PackageError(
            f"{folder}: {MARKER} is {marker_path.stat().st_size} bytes, more than the limit "
            f"of {MAX_MARKER_BYTES}"
        )
    marker = read_marker(marker_path.read_bytes(), str(folder))
    weights = folder / marker.onnx
    try:
        inside = weights.resolve(strict=True).is_relative_to(folder.resolve())
        mode = os.stat(weights).st_mode
    except OSError:
        raise PackageError(f"{folder}: {MARKER} names {marker.onnx}, which is missing") from None
    if not inside or not stat.S_ISREG(mode):
        raise PackageError(
            f"{folder}: {marker.onnx}: expected a regular file inside the package folder"
        )
    _check_size(folder, marker, os.stat(weights).st_size)
    found = sha256_file(weights)
    if found != marker.sha256:
        raise _checksum_error(folder, marker, found)
    log.info("package %s: ONNX weights %s (sha256 %s)", folder, weights, found[:12])
    return weights


# --- zip files ------------------------------------------------------------------------------


def _zip_weights(path: Path, cache: Path) -> Path:
    if not path.is_file():
        raise PackageError(f"{path}: package file not found")
    try:
        with zipfile.ZipFile(path) as archive:
            entries = _checked_entries(archive, path)
            if MARKER not in entries:
                raise _missing_marker(path, any(n in entries for n in RDF_NAMES), "zip")
            info = entries[MARKER]
            if info.file_size > MAX_MARKER_BYTES:
                raise PackageError(
                    f"{path}: {MARKER} is {info.file_size} bytes, more than the limit of "
                    f"{MAX_MARKER_BYTES}"
                )
            with archive.open(info) as f:
                marker = read_marker(f.read(MAX_MARKER_BYTES + 1), str(path))
            weights = entries.get(marker.onnx)
            if weights is None:
                raise PackageError(f"{path}: {MARKER} names {marker.onnx}, which is missing")
            _check_size(path, marker, weights.file_size)
            return _extract(archive, weights, marker, path, cache)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError) as exc:
        raise PackageError(f"{path}: not a readable zip package ({exc})") from None


def _checked_entries(archive: zipfile.ZipFile, path: Path) -> dict[str, zipfile.ZipInfo]:
    """The zip's entries by name, refusing the whole package for any unsafe entry."""
    infos = archive.infolist()
    if len(infos) > MAX_ENTRIES:
        raise PackageError(
            f"{path}: {len(infos)} entries, more than the limit of {MAX_ENTRIES} for a package"
        )
    entries: dict[str, zipfile.ZipInfo] = {}
    for info in infos:
        name = info.filename
        if _unsafe_name(name):
            raise PackageError(
                f"{path}: entry {_short(name)} could be written outside its folder "
                "(absolute, '..', a backslash or a drive): refused (zip slip)"
            )
        if name in entries:
            raise PackageError(f"{path}: entry {_short(name)} appears twice: refused")
        if info.flag_bits & 0x1:
            raise PackageError(f"{path}: entry {_short(name)} is encrypted: refused")
        entries[name] = info
    return entries


def _unsafe_name(name: str) -> bool:
    parts = name.split("/")
    return (
        not name
        or name.startswith("/")
        or "\\" in name
        or "\x00" in name
        or re.match(r"[A-Za-z]:", name) is not None
        or any(p == ".." for p in parts)
    )


def _extract(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, marker: PackageMarker, path: Path, cache: Path
) -> Path:
    target = cache / f"{marker.sha256}.onnx"
    if target.is_file() and not target.is_symlink() and sha256_file(target) == marker.sha256:
        log.info("package %s: ONNX weights from the cache, %s", path, target)
        return target
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PackageError(
            f"{path}: cannot create the cache folder {cache} for its ONNX weights "
            f"({exc.strerror}); set N2N_CACHE to a writable folder"
        ) from None
    digest = hashlib.sha256()

    def copy(out: IO[bytes]) -> None:
        written = 0
        with archive.open(info) as src:
            while chunk := src.read(min(_CHUNK, marker.size + 1 - written)):
                written += len(chunk)
                if written > marker.size:
                    raise PackageError(
                        f"{path}: {marker.onnx} expands past the {marker.size} bytes its "
                        f"{MARKER} states: refused"
                    )
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != marker.sha256:
            raise _checksum_error(path, marker, digest.hexdigest())

    try:
        write_atomic(target, copy)
    except PackageError:
        raise
    except (OSError, zipfile.BadZipFile) as exc:
        raise PackageError(
            f"{path}: cannot extract {marker.onnx} to {target} ({exc}); set N2N_CACHE to a "
            "writable folder"
        ) from None
    log.info("package %s: ONNX weights extracted to %s", path, target)
    return target


# --- helpers --------------------------------------------------------------------------------


def _default_cache() -> Path:
    from n2n_infer.probe import cache_dir  # the runtime's one cache folder

    return cache_dir() / "packages"


def _missing_marker(path: Path, has_rdf: bool, kind: str) -> PackageError:
    if has_rdf:
        return PackageError(
            f"{path}: a BioImage.IO package that n2n did not write (no {MARKER}): n2n_infer "
            "runs only packages made by `n2n-export bioimageio`; run this one with "
            "bioimageio.core or a BioImage.IO consumer (Fiji/deepImageJ, napari, ilastik, QuPath)"
        )
    expected = "rdf.yaml and " + MARKER
    return PackageError(f"{path}: not a BioImage.IO package: this {kind} has no {expected}")


def _check_size(path: Path, marker: PackageMarker, found: int) -> None:
    if found != marker.size:
        raise PackageError(
            f"{path}: {marker.onnx} is {found} bytes; its {MARKER} states {marker.size}"
        )


def _checksum_error(path: Path, marker: PackageMarker, found: str) -> PackageError:
    return PackageError(
        f"{path}: {marker.onnx} has sha256 {found[:12]}…, its {MARKER} states "
        f"{marker.sha256[:12]}…: the weights were changed; refused"
    )


def _plain_name(name: Any) -> bool:
    return isinstance(name, str) and bool(_PLAIN_NAME.fullmatch(name)) and name not in (".", "..")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
