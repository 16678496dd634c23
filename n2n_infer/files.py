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

Only a regular file (or nothing) is ever renamed over: a FIFO, a device, a
socket or a folder at the target is refused (:class:`~n2n_infer.errors.NotRegularFileError`),
or, when the caller allows streams, written into (see :func:`write_atomic`).

While it is written, a temporary file is held under an exclusive ``flock`` by
the process writing it (until it is renamed or removed); the kernel releases the
lock when that process ends, however it ends. :func:`remove_stale_temp` deletes
a temporary file only when it can take that lock itself, so that a job never
deletes the live temporary file of another job writing to the same folder.
Where ``flock`` is missing (Windows), nothing is ever deleted as stale.
"""

from __future__ import annotations

import errno
import hashlib
import io
import logging
import os
import re
import secrets
import stat
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from n2n_infer.errors import NotRegularFileError

try:
    import fcntl
except ImportError:  # Windows: no flock; stale temporary files are never removed there
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "TEMP_PREFIX",
    "TEMP_SUFFIX",
    "is_temp_name",
    "remove_stale_temp",
    "sha256_file",
    "visible_files",
    "write_atomic",
    "write_text_atomic",
]

log = logging.getLogger(__name__)

TEMP_PREFIX = ".n2n-"
TEMP_SUFFIX = ".part"
#: Bytes of the target's name kept in a temporary name (file names are limited to 255 bytes).
NAME_BYTES = 64
_TEMP_RE = re.compile(r"\.n2n-.*\.[0-9a-f]{16}\.part", re.DOTALL)
_BLOCK = 1 << 20
#: Symbolic links followed, at most, to find what a path names (Linux's own limit).
MAX_LINKS = 40
#: Paths that name a descriptor of this process: ``/dev/fd/N``, ``/proc/self/fd/N``.
_FD_PATH = re.compile(r"/(?:dev/fd|proc/self/fd|proc/thread-self/fd)/(\d+)")
_STD_PATHS = {"/dev/stdout": 1, "/dev/stderr": 2}
#: Tries at a temporary file before giving up (one is retried only when another
#: job's cleanup removed it in the instant between its creation and its lock).
_TEMP_TRIES = 5


def temp_name(target: str) -> str:
    """A fresh temporary file name for ``target`` (a file name, not a path)."""
    head = target.encode("utf-8", "surrogateescape")[:NAME_BYTES]
    short = head.decode("utf-8", "ignore")  # never cut a character in two
    return f"{TEMP_PREFIX}{short}.{secrets.token_hex(8)}{TEMP_SUFFIX}"


def is_temp_name(name: str) -> bool:
    """True for a name that :func:`temp_name` makes (and, in practice, nothing else)."""
    return _TEMP_RE.fullmatch(name) is not None


def kind_of(mode: int) -> str:
    """What an ``st_mode`` is, in words: ``"regular file"``, ``"FIFO"``, ``"folder"``, ..."""
    for test, word in (
        (stat.S_ISREG, "regular file"),
        (stat.S_ISDIR, "folder"),
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISLNK, "symbolic link"),
    ):
        if test(mode):
            return word
    return "special file"


def _descriptor(path: str) -> int | None:
    """The descriptor ``path`` names when it is ``/dev/stdout``, ``/dev/fd/N``,
    ``/proc/self/fd/N`` or ``/proc/<this process>/fd/N``; else ``None``."""
    if path in _STD_PATHS:
        return _STD_PATHS[path]
    found = _FD_PATH.fullmatch(path) or re.fullmatch(rf"/proc/{os.getpid()}/fd/(\d+)", path)
    return int(found.group(1)) if found else None


def resolve_target(path: str | Path) -> tuple[Path, int | None]:
    """What a write to ``path`` would reach: the final path, symbolic links followed,
    and the descriptor of this process it names (see :func:`write_atomic`), or ``None``.

    Raises:
        OSError: a loop of symbolic links (``ELOOP``), or a folder that cannot be read.
    """
    current = os.path.abspath(path)
    for _ in range(MAX_LINKS):
        fd = _descriptor(current)
        if fd is not None:
            return Path(current), fd
        head, name = os.path.split(current)
        head = os.path.realpath(head)
        current = os.path.join(head, name)
        fd = _descriptor(current)  # /dev/fd/N reached through /proc/self
        if fd is not None:
            return Path(current), fd
        if not os.path.islink(current):
            return Path(current), None
        current = os.path.normpath(os.path.join(head, os.readlink(current)))
    raise OSError(errno.ELOOP, "too many levels of symbolic links", str(path))


def write_atomic(
    path: str | Path, write: Callable[[IO[bytes]], object], *, stream_ok: bool = False
) -> None:
    """Call ``write`` on a new temporary file beside ``path``, then rename it to ``path``.

    The file gets the usual permissions (0666 less the umask). On any error the
    temporary file is removed and ``path`` is left as it was; no ``.part`` file
    is ever left behind by a write that returns or raises.

    What stands at ``path`` decides how it is written:

    - nothing, or a regular file: written atomically, as above;
    - a symbolic link (or a chain of them): followed, so that the file it leads
      to is written atomically (a temporary file beside it, renamed over it)
      and the link itself is kept; a broken link creates the file it names;
    - anything that is not a regular file (a FIFO, a character or block device,
      a socket, a folder): never renamed over. Without ``stream_ok`` it is
      refused; with ``stream_ok`` a FIFO or a character device (``/dev/null``,
      a terminal) is written into: ``write`` fills a buffer in memory, whose
      bytes are then written in one go (a FIFO with no reader yet waits for one);
      a block device, a socket and a folder are still refused;
    - ``/dev/stdout``, ``/dev/stderr``, ``/dev/fd/N``, ``/proc/self/fd/N`` (and
      links to them) and, only with ``stream_ok``, ``-`` (standard output): the
      bytes go to that descriptor of this process as it is already open
      (Python's buffered ``sys.stdout``/``sys.stderr`` are flushed first), so
      that ``--report /dev/stdout > run.log`` adds the report after what was
      printed instead of replacing ``run.log``; refused without ``stream_ok``.

    Raises:
        NotRegularFileError: (an ``OSError``) ``path`` is, or leads to, something
            that is not a regular file and may not be written into; the message
            names ``path`` and what it is.
        OSError: the folder is missing or not writable, the disk is full, ...
    """
    if stream_ok and str(path) == "-":
        _write_descriptor(1, write)
        return
    target, fd = resolve_target(path)
    direct = Path(os.path.abspath(path)) == target
    shown = str(path) if direct else f"{path} (which leads to {target})"
    if fd is not None:
        if not stream_ok:
            raise NotRegularFileError(
                f"{shown}: is an open descriptor (standard output, standard error or "
                "/dev/fd/N), not a regular file: give a file name"
            )
        _write_descriptor(fd, write)
        return
    kind = _kind_at(target)
    if kind in ("FIFO", "character device") and stream_ok:
        _write_stream(target, shown, kind, write)
        return
    if kind not in (None, "regular file"):
        raise NotRegularFileError(
            f"{shown}: is a {kind}, not a regular file; expected a file name (nothing written)"
        )
    _write_replacing(target, shown, write)


def _kind_at(path: Path) -> str | None:
    """What stands at ``path`` (links not followed), or ``None`` when nothing does."""
    try:
        return kind_of(os.lstat(path).st_mode)
    except FileNotFoundError:
        return None


def _write_replacing(target: Path, shown: str, write: Callable[[IO[bytes]], object]) -> None:
    """A temporary file beside ``target``, locked while it exists, renamed over ``target``."""
    tmp, fd = _locked_temp(target)
    try:
        lock = os.dup(fd) if fcntl is not None else -1  # holds the lock past the file's close
    except OSError:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        kind = _kind_at(target)  # again: it may have changed while ``write`` ran
        if kind not in (None, "regular file"):
            raise NotRegularFileError(
                f"{shown}: became a {kind} while it was written; not replaced (nothing written)"
            )
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        if lock >= 0:
            os.close(lock)


def _locked_temp(target: Path) -> tuple[Path, int]:
    """A new temporary file beside ``target`` and its descriptor, under an exclusive lock.

    The lock is taken after the file is created: if another job's cleanup
    removed the file in between (it took the lock first), a new one is made.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    flags |= getattr(os, "O_CLOEXEC", 0)
    for _ in range(_TEMP_TRIES):
        tmp = target.parent / temp_name(target.name)
        fd = os.open(tmp, flags, 0o666)
        if fcntl is None:
            return tmp, fd
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            mine = os.fstat(fd)
            now = os.lstat(tmp)
            if (now.st_dev, now.st_ino) == (mine.st_dev, mine.st_ino):
                return tmp, fd
        except FileNotFoundError:
            pass
        except OSError as exc:  # a file system without flock: written unlocked
            log.debug("%s: no lock on the temporary file (%s)", tmp, exc)
            return tmp, fd
        os.close(fd)  # removed as stale by another job before it was locked: again
    raise OSError(errno.EAGAIN, "temporary files kept disappearing", str(target.parent))


def _buffered(write: Callable[[IO[bytes]], object]) -> bytes:
    """What ``write`` writes, in memory (writers may seek: a stream cannot)."""
    buffer = io.BytesIO()
    write(buffer)
    return buffer.getvalue()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _write_descriptor(fd: int, write: Callable[[IO[bytes]], object]) -> None:
    """``write``'s bytes into this process's descriptor ``fd``, left open."""
    data = _buffered(write)
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()  # what Python printed comes first
    _write_all(fd, data)


def _write_stream(
    target: Path, shown: str, kind: str, write: Callable[[IO[bytes]], object]
) -> None:
    """``write``'s bytes into the FIFO or character device at ``target``."""
    data = _buffered(write)
    flags = os.O_WRONLY | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    nonblock = getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(target, flags | nonblock)
    except OSError as exc:
        if exc.errno != errno.ENXIO:  # ENXIO: a FIFO that no one reads yet
            raise
        log.info("%s: waiting for a reader of the FIFO", shown)
        fd = os.open(target, flags)
    try:
        now = kind_of(os.fstat(fd).st_mode)
        if now != kind:  # replaced since it was looked at
            raise NotRegularFileError(f"{shown}: is now a {now}, not a {kind}; nothing written")
        if nonblock:
            os.set_blocking(fd, True)
        _write_all(fd, data)
    finally:
        os.close(fd)


def write_text_atomic(path: str | Path, text: str, *, stream_ok: bool = False) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`write_atomic`)."""
    data = text.encode("utf-8")
    write_atomic(path, lambda f: f.write(data), stream_ok=stream_ok)


def remove_stale_temp(path: str | Path) -> bool:
    """Delete the temporary file ``path`` when no live process is writing it; True if deleted.

    Stale is proven, not guessed: the file must be a regular file (a symbolic
    link is never followed) whose ``flock`` this process can take at once; a
    writer holds it from the file's creation to its rename (see
    :func:`write_atomic`), and the kernel drops it when the writer dies. Where
    ``flock`` is missing or fails (Windows, some network file systems) nothing
    is deleted.
    """
    if fcntl is None:
        return False
    flags = os.O_RDWR | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):  # never open a device or a FIFO
            return False
        fd = os.open(path, flags)
    except OSError:  # gone, a link, not ours to open: not provably stale
        return False
    try:
        mine = os.fstat(fd)
        if not stat.S_ISREG(mine.st_mode):
            return False
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        now = os.lstat(path)
        if (now.st_dev, now.st_ino) != (mine.st_dev, mine.st_ino):
            return False
        os.unlink(path)  # under the lock: a writer that created it waits, then makes another
        return True
    except OSError:  # held by a live writer (EWOULDBLOCK), or no flock here
        return False
    finally:
        os.close(fd)


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
