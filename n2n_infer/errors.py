"""Exception types of the runtime, and :func:`printable`, the one way text reaches a terminal."""

from __future__ import annotations

import re

__all__ = [
    "ArgumentError",
    "ImageError",
    "InferenceError",
    "ModelLoadError",
    "N2NError",
    "NotRegularFileError",
    "ProviderError",
    "first_line",
    "printable",
]


class N2NError(Exception):
    """Base of every error that n2n raises on purpose."""


class ModelLoadError(N2NError):
    """A model file is missing, corrupt, of an unknown format version or wrong signature."""


class ProviderError(N2NError):
    """A requested execution provider (e.g. CUDA) cannot be used."""


class ImageError(N2NError, ValueError):
    """An input image has a shape, dtype or content that cannot be denoised."""


class InferenceError(N2NError):
    """onnxruntime failed while running the model (e.g. out of memory on the device)."""


class ArgumentError(N2NError, ValueError, TypeError):
    """An argument of the wrong type or out of range; the message names it, what was
    expected and what was given. Also a ``ValueError`` and a ``TypeError``."""


class NotRegularFileError(N2NError, OSError):
    """A path that is written (or read) as a regular file is something else: a FIFO, a
    device, a socket or a folder. Also an ``OSError``; the message names the path and
    what it is."""


#: What :func:`printable` escapes: C0 controls, DEL, C1 controls, lone surrogates (the
#: undecodable bytes of a file name), the line and paragraph separators and the
#: bidirectional marks, embeddings, overrides and isolates.
UNPRINTABLE = re.compile(
    "[\x00-\x1f\x7f-\x9f\ud800-\udfff\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: object) -> str:
    """``str(text)`` made safe for a terminal: each character of :data:`UNPRINTABLE`
    becomes a visible escape (``\\x1b``, ``\\n``, ``\\u202e``, ``\\udcff``), so that a
    file name or a model's metadata can neither drive the terminal (retitle it, clear
    it) nor forge a line. Other text, backslashes included, is returned unchanged.
    """
    return UNPRINTABLE.sub(_escape, str(text))


def first_line(text: str, *names: object) -> str:
    """The first line of ``text`` (an exception's message: its details are dropped),
    with each of ``names`` (paths, file names: a newline in one is not the end of a
    line) shown escaped as by :func:`printable` first."""
    for name in names:
        shown = str(name)
        if shown and UNPRINTABLE.search(shown):
            text = text.replace(shown, printable(shown))
    lines = text.strip().splitlines()
    return lines[0] if lines else ""
