"""`smserve package` and the safe extraction of `smserve check` (issue 11; the layout rules of core §5.4):
real folders, real tar.gz files, the real command line."""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from smserve.archive import ArchiveError, extract, package


def model_folder(root: Path, nested: str | None = None) -> Path:
    folder = root / "src"
    base = folder / nested if nested else folder
    base.mkdir(parents=True)
    (base / "model.pt").write_bytes(b"\x00weights" * 100)
    (base / "inference.py").write_text("def model_fn(model_dir):\n    return None\n")
    (base / "requirements.txt").write_text("tabulate==0.9.0\n")
    (base / "__pycache__").mkdir()
    (base / "__pycache__" / "inference.cpython-311.pyc").write_bytes(b"cache")
    (base / "helper.sh").write_text("#!/bin/sh\n")
    (base / "helper.sh").chmod(0o755)
    return folder


def members(archive: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(archive) as tar:
        return {m.name: m for m in tar.getmembers()}


def smserve(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "smserve", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60)


def test_package_moves_code_into_code_dir_and_flattens_a_single_folder(tmp_path):
    src = model_folder(tmp_path, nested="my-model")
    out = smserve("package", "src", "-o", "model.tar.gz", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "my-model/* -> ./" in out.stdout
    assert "inference.py -> code/inference.py" in out.stdout and "requirements.txt -> code/requirements.txt" in out.stdout
    found = members(tmp_path / "model.tar.gz")
    assert sorted(found) == ["code", "code/inference.py", "code/requirements.txt", "helper.sh", "model.pt"]
    assert found["helper.sh"].mode == 0o755 and found["model.pt"].mode == 0o644
    assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 and m.uname == "" for m in found.values())
    with tarfile.open(tmp_path / "model.tar.gz") as tar:
        assert tar.extractfile("model.pt").read() == (src / "my-model" / "model.pt").read_bytes()


def test_package_is_reproducible_byte_for_byte(tmp_path):
    src = model_folder(tmp_path)
    first = package(src, tmp_path / "a.tar.gz").archive.read_bytes()
    for path in src.rglob("*"):  # new times and a new cache file change nothing
        path.touch()
    (src / "__pycache__" / "other.pyc").write_bytes(b"x")
    second = package(src, tmp_path / "b.tar.gz").archive.read_bytes()
    assert hashlib.sha256(first).hexdigest() == hashlib.sha256(second).hexdigest()


@pytest.mark.parametrize("case", ["both inference.py", "nested archive", "link outside", "output inside",
                                  "empty", "not a folder"])
def test_package_refuses_ambiguous_or_unsafe_folders_and_writes_nothing(tmp_path, case):
    src = model_folder(tmp_path)
    out = tmp_path / "model.tar.gz"
    if case == "both inference.py":
        (src / "code").mkdir()
        (src / "code" / "inference.py").write_text("")
        expected = "delete one of them"
    elif case == "nested archive":
        (src / "weights.tar.gz").write_bytes(b"x")
        expected = "never extracted"
    elif case == "link outside":
        (tmp_path / "secret").write_text("s")
        (src / "link").symlink_to(tmp_path / "secret")
        expected = "outside"
    elif case == "output inside":
        out = src / "model.tar.gz"
        expected = "inside the folder"
    elif case == "empty":
        src = tmp_path / "empty"
        src.mkdir()
        expected = "holds no files"
    else:
        src = src / "model.pt"
        expected = "not a directory"
    with pytest.raises(ArchiveError, match=expected):
        package(src, out)
    assert not out.exists() and not list(out.parent.glob(".*.partial"))


def tarball(path: Path, entries: list[tarfile.TarInfo]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info in entries:
            tar.addfile(info, io.BytesIO(b"x" * info.size) if info.isfile() else None)
    return path


def entry(name: str, kind=tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, link, 1 if kind == tarfile.REGTYPE else 0
    return info


@pytest.mark.parametrize("bad", [entry("../evil.py"), entry("/etc/evil.py"),
                                 entry("link", tarfile.SYMTYPE, "/etc/passwd"),
                                 entry("up", tarfile.SYMTYPE, "../../outside")])
def test_extract_refuses_members_leaving_the_folder(tmp_path, bad):
    archive = tarball(tmp_path / "bad.tar.gz", [entry("model.pt"), bad])
    target = tmp_path / "out"
    target.mkdir()
    with pytest.raises(ArchiveError, match="refused"):
        extract(archive, target)
    assert not (tmp_path / "evil.py").exists()


@pytest.mark.parametrize("content", [b"", b"not a tarball at all", b"\x1f\x8b\x08\x00garbage"])
def test_extract_reports_corrupt_or_empty_archives(tmp_path, content):
    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(content)
    with pytest.raises(ArchiveError, match="cannot be read"):
        extract(archive, tmp_path)


def test_extract_checks_members_itself_where_python_has_no_tarfile_filter(tmp_path, monkeypatch):
    """The images' Debian python3.11 (3.11.2) predates tarfile's extraction filters (3.11.4)."""
    monkeypatch.delattr(tarfile, "data_filter")
    good = tarball(tmp_path / "good.tar.gz", [entry("code/inference.py"), entry("model.pt")])
    target = tmp_path / "out"
    target.mkdir()
    extract(good, target)
    assert (target / "code" / "inference.py").read_bytes() == b"x"
    bad = tarball(tmp_path / "bad.tar.gz", [entry("model.pt"), entry("../evil.py")])
    with pytest.raises(ArchiveError, match="'../evil.py' is refused"):
        extract(bad, tmp_path / "out")
    assert not (tmp_path / "evil.py").exists()
