"""Files written, found and identified safely: atomic writes, their temporary names,
folder walks, sha256.

The one home of these facts for the whole project: ``training``, ``export``,
``bench`` and ``scripts`` import them from here (this module needs only the
standard library, so importing it never loads onnxruntime).

An atomic write goes to a temporary file beside the target, named
``.n2n-<start of the name>.<16 hex digits>.part``, which is renamed over the
target once complete; an interrupted write never leaves a half-written
target. :func:`is_temp_name` recognises exactly the names this module makes, so
that a cleanup never deletes a file it did not create.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

__all__ = [
    "TEMP_PREFIX",
    "TEMP_SUFFIX",
    "is_temp_name",
    "sha256_file",
    "visible_files",
    "write_atomic",
]

TEMP_PREFIX = ".n2n-"
TEMP_SUFFIX = ".part"
#: Bytes of the target's name kept in a temporary name (file names are limited to 255 bytes).
NAME_BYTES = 64
_TEMP_RE = re.compile(r"\.n2n-.*\.[0-9a-f]{16}\.part", re.DOTALL)
_BLOCK = 1 << 20


def temp_name(target: str) -> str:
    """A fresh temporary file name for ``target`` (a file name, not a path)."""
    head = target.encode("utf-8", "surrogateescape")[:NAME_BYTES]
    short = head.decode("utf-8", "ignore")  # never cut a character in two
    return f"{TEMP_PREFIX}{short}.{secrets.token_hex(8)}{TEMP_SUFFIX}"


def is_temp_name(name: str) -> bool:
    """True for a name that :func:`temp_name` makes (and, in practice, nothing else)."""
    return _TEMP_RE.fullmatch(name) is not None


def write_atomic(path: str | Path, write: Callable[[IO[bytes]], object]) -> None:
    """Call ``write`` on a new temporary file beside ``path``, then rename it to ``path``.

    The file gets the usual permissions (0666 less the umask). On any error the
    temporary file is removed and ``path`` is left as it was.

    Raises:
        OSError: the folder is missing or not writable, the disk is full, ...
    """
    path = Path(path)
    tmp = path.parent / temp_name(path.name)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`write_atomic`)."""
    data = text.encode("utf-8")
    write_atomic(path, lambda f: f.write(data))


def sha256_file(path: str | Path) -> str:
    """The sha256 of a file's bytes, in hex, read in 1 MiB blocks.

    Raises:
        OSError: the file cannot be read.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def visible_files(root: str | Path, recursive: bool = False) -> Iterator[Path]:
    """The names of the files in ``root`` (and, with ``recursive``, its subfolders),
    hidden files and folders (``.x``) skipped, in the walk's order.

    Symbolic links to folders are followed, each real folder once (a link back up
    the tree is not followed again). Names are yielded as listed: a broken link or
    a FIFO is yielded too, so that callers can report it.
    """
    seen: set[str] = set()
    for folder, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen or not recursive:
            dirs[:] = []
        if real in seen:
            continue
        seen.add(real)
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if not name.startswith("."):
                yield Path(folder) / name
