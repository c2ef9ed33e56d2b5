"""model.tar.gz as SageMaker extracts it to /opt/ml/model: build one from a folder, reproducibly, with the
layout fixed where the fix is unambiguous (`smserve package`), and open one safely (`smserve check`).

The layout rules are the diagnostics of spec core §5.4 turned into actions: the user module and
requirements.txt belong in code/, the model files at the archive root, and nothing else is guessed. Every move
is reported; every refusal says what to change. Output is byte-for-byte reproducible (sorted members, fixed
times and owners, a gzip header without name or time), so the same folder always gives the same archive.
"""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

SKIPPED_NAMES = {"__pycache__", ".git", ".hg", ".svn", ".ipynb_checkpoints", ".DS_Store", ".pytest_cache"}
SKIPPED_SUFFIXES = (".pyc", ".pyo")


class ArchiveError(Exception):
    """A model folder or archive that cannot be packaged or opened as it is; the message says what to change."""


@dataclass
class Packaged:
    archive: Path
    members: list[str]
    moves: list[str] = field(default_factory=list)  # "inference.py -> code/inference.py"
    skipped: list[str] = field(default_factory=list)


def _collect(root: Path) -> dict[str, Path]:
    """Archive path -> file, for every file under `root` (links resolved, caches skipped)."""
    files: dict[str, Path] = {}
    resolved_root = root.resolve()
    for directory, subdirs, names in os.walk(root, followlinks=False):
        subdirs[:] = sorted(d for d in subdirs if d not in SKIPPED_NAMES)
        for entry in [*subdirs, *names]:
            path = Path(directory, entry)
            if path.is_symlink() and not path.resolve().is_relative_to(resolved_root):
                raise ArchiveError(f"{path} links to {path.resolve()}, outside {root}: SageMaker would not see the "
                                   f"target; copy the file into the folder instead of linking it")
            if entry in subdirs and path.is_symlink():
                raise ArchiveError(f"{path} is a link to a directory; replace it with the directory itself")
        for name in names:
            path = Path(directory, name)
            if name in SKIPPED_NAMES or name.endswith(SKIPPED_SUFFIXES):
                continue
            if not path.is_file():
                raise ArchiveError(f"{path} is not a regular file (a socket, device or broken link); remove it")
            files[path.relative_to(root).as_posix()] = path
    return files


def plan_layout(src: Path, program: str = "inference.py") -> tuple[dict[str, Path], list[str]]:
    """The archive's members (archive path -> source file) and the moves made to reach SageMaker's layout."""
    if not src.is_dir():
        raise ArchiveError(f"{src} is not a directory; pass the folder that holds the model files")
    root, moves = src, []
    visible = [p for p in src.iterdir() if not p.name.startswith(".") and p.name not in SKIPPED_NAMES]
    if len(visible) == 1 and visible[0].is_dir() and visible[0].name != "code":
        root = visible[0]
        moves.append(f"{root.name}/* -> ./ (a single top-level folder would make SageMaker serve from "
                     f"/opt/ml/model/{root.name})")
    files = _collect(root)
    if not files:
        raise ArchiveError(f"{src} holds no files; put the model files (and code/inference.py) in it")
    for name in (program, "requirements.txt"):
        if name in files:
            target = f"code/{name}"
            if target in files:
                raise ArchiveError(f"both {root / name} and {root / target} exist; SageMaker would use "
                                   f"{target} only: delete one of them")
            files[target] = files.pop(name)
            moves.append(f"{name} -> {target}")
    nested = sorted(name for name in files if "/" not in name and name.endswith((".tar.gz", ".tgz")))
    if nested:
        raise ArchiveError(f"{', '.join(nested)} in {root}: a nested archive is never extracted on SageMaker; "
                           f"extract it into the folder first")
    return files, moves


def _member(name: str, size: int, mode: int, kind: bytes = tarfile.REGTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.type = size, mode, kind
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
    return info


def write_archive(files: dict[str, Path], out: Path) -> list[str]:
    """A reproducible model.tar.gz: written beside `out` and renamed into place, so a failure leaves nothing."""
    directories = sorted({"/".join(name.split("/")[:i]) for name in files for i in range(1, name.count("/") + 1)})
    partial = out.with_name(f".{out.name}.partial")
    try:
        with open(partial, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as zipped, \
                tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for name in sorted([*directories, *files]):
                if name in files:
                    data = files[name].read_bytes()
                    mode = 0o755 if files[name].stat().st_mode & 0o111 else 0o644
                    tar.addfile(_member(name, len(data), mode), io.BytesIO(data))
                else:
                    tar.addfile(_member(name, 0, 0o755, tarfile.DIRTYPE))
        os.replace(partial, out)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return sorted([*directories, *files])


def package(src: Path, out: Path, program: str = "inference.py") -> Packaged:
    src, out = src.resolve(), out.resolve()
    if out.is_relative_to(src):
        raise ArchiveError(f"the archive {out} would be inside the folder it packs; write it elsewhere (-o)")
    if not out.parent.is_dir():
        raise ArchiveError(f"{out.parent} does not exist; create it or choose another -o path")
    files, moves = plan_layout(src, program)
    members = write_archive(files, out)
    return Packaged(archive=out, members=members, moves=moves)


class _Refused(Exception):
    def __init__(self, member: tarfile.TarInfo, why: str):
        super().__init__(why)
        self.member = member


def _checked(member: tarfile.TarInfo, root: Path) -> tarfile.TarInfo:
    """What Python's tarfile "data" filter refuses, checked here as well: the filter exists only from Python
    3.11.4, and the images' Debian python3.11 is 3.11.2."""
    if member.name.startswith("/") or Path(member.name).is_absolute():
        raise _Refused(member, "absolute path")
    target = (root / member.name).resolve()
    if not target.is_relative_to(root):
        raise _Refused(member, f"it would be written outside {root}")
    if member.issym() or member.islnk():
        base = target.parent if member.issym() else root
        if os.path.isabs(member.linkname) or not (base / member.linkname).resolve().is_relative_to(root):
            raise _Refused(member, f"it links to {member.linkname}, outside {root}")
    elif not (member.isfile() or member.isdir()):
        raise _Refused(member, "devices and pipes are not model files")
    return member


def extract(archive: Path, into: Path) -> None:
    """Open a model archive as SageMaker would, refusing members that would land outside `into` (absolute
    paths, `..`, links leaving the folder, devices); where Python has the tarfile "data" filter, it also applies
    (it clears set-user-ID and group bits)."""
    root = Path(into).resolve()
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = [_checked(member, root) for member in tar.getmembers()]
            if hasattr(tarfile, "data_filter"):
                tar.extractall(root, members=members, filter="data")
            else:
                for member in members:
                    member.mode &= 0o777 if member.isdir() else 0o755 if member.mode & 0o100 else 0o644
                tar.extractall(root, members=members)
    except _Refused as exc:
        raise ArchiveError(f"{archive}: member {exc.member.name!r} is refused ({exc}); SageMaker archives hold "
                           f"relative paths inside the model folder only: re-pack with `smserve package`") from None
    except (tarfile.TarError, EOFError, OSError, gzip.BadGzipFile) as exc:
        raise ArchiveError(f"{archive} cannot be read as a .tar.gz ({exc}); re-pack it with `smserve package`") \
            from None
