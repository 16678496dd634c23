"""The bundled models: where they live and how they are found by name."""

from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path

from n2n_infer.errors import ModelLoadError

#: The model ``Denoiser()`` uses when none is named.
DEFAULT_MODEL = "photo"
#: The bundled grey-native model: what ``Denoiser()`` and ``n2n-infer batch`` run grey
#: images on when no model is named.
DEFAULT_GREY_MODEL = "grey"
#: The distribution that installs the models as the ``n2n_infer.models`` package.
DISTRIBUTION = "n2n"


def models_dir() -> Path:
    """The folder of bundled models, however ``n2n_infer`` was imported.

    Looked for in order: the ``n2n_infer.models`` package (an install, or an
    editable install that maps it to the repository's ``models/``); the
    ``models/`` folder beside the ``n2n_infer/`` folder this module was
    imported from, when that is a source tree with a ``pyproject.toml`` (a
    clone's root on ``sys.path`` shadows the installed package, and
    ``n2n_infer.models`` exists only once installed); the models of the
    installed ``n2n`` distribution. Returns the first that holds an ``.onnx``
    file, else the first candidate (which may be empty or missing).
    """
    package = _package_models()
    root = Path(__file__).resolve().parent.parent
    source = root / "models" if (root / "pyproject.toml").is_file() else None
    for folder in (package, source, _installed_models()):
        if folder is not None and any(folder.glob("*.onnx")):
            return folder
    return package or root / "models"


def _package_models() -> Path | None:
    """The ``n2n_infer.models`` package's folder, found without importing it."""
    try:
        spec = importlib.util.find_spec("n2n_infer.models")
    except ModuleNotFoundError:
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _installed_models() -> Path | None:
    """``n2n_infer/models`` in the installed distribution's files (not necessarily imported)."""
    try:
        dist = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return None
    return Path(str(dist.locate_file("n2n_infer/models")))


def available_models() -> list[str]:
    """Names of the bundled models, e.g. ``["photo"]``."""
    return sorted(p.stem for p in models_dir().glob("*.onnx"))


def resolve_model(model: str | Path | None) -> Path:
    """Turn a bundled model name, a path, or ``None`` (the default) into a file path.

    A BioImage.IO package that ``n2n-export bioimageio`` wrote (a zip file, or the
    folder it unpacks to) becomes its ONNX weights, checked against the package's
    checksum (:func:`n2n_infer.package.package_weights`; a zip's weights are extracted
    once into the runtime's cache folder). A bundled name wins over a folder of the
    same name in the working directory.

    Raises:
        ModelLoadError: neither a bundled name nor an existing file; the message
            lists the bundled names. ``n2n_infer.package.PackageError`` (a
            ``ModelLoadError``): a package that n2n did not write, an unsafe zip, or
            weights that do not match their checksum.
    """
    if model is None:
        model = DEFAULT_MODEL
    path = Path(model)
    if path.suffix == "" and path.name == str(model):
        bundled = models_dir() / f"{model}.onnx"
        if bundled.is_file():
            return bundled
        if not path.is_dir():
            raise ModelLoadError(
                f"model {str(model)!r}: no bundled model of that name (bundled: "
                f"{', '.join(available_models()) or 'none'}); pass a path to an .onnx file"
            )
    if path.is_dir() or (path.is_file() and _starts_like_zip(path)):
        from n2n_infer.package import package_weights  # only for packages: json, zipfile

        return package_weights(path)
    if not path.is_file():
        raise ModelLoadError(f"{path}: model file not found")
    return path


def _starts_like_zip(path: Path) -> bool:
    """Whether ``path`` begins as a zip archive does (an ONNX file, protobuf, never does)."""
    try:
        with open(path, "rb") as f:
            return f.read(4) in (b"PK\x03\x04", b"PK\x05\x06")
    except OSError:
        return False
