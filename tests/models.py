"""Real models and model archives for the tests, built with the real framework."""

from __future__ import annotations

import io
import tarfile
import textwrap
from pathlib import Path

import numpy as np


def write_code(model_dir: Path, source: str, name: str = "inference.py", where: str = "code") -> Path:
    target = Path(model_dir) / where / name if where else Path(model_dir) / name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(textwrap.dedent(source))
    return target


def make_dir(tmp_path: Path, name: str = "model") -> Path:
    path = tmp_path / name
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o755)
    tmp_path.chmod(0o755)
    return path


def pack(folder: Path, archive: Path) -> Path:
    """A plain model.tar.gz of the folder's contents (no smserve involved: the archive a user's tar makes)."""
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(Path(folder).iterdir()):
            tar.add(path, arcname=path.name)
    return archive


def npy(array: np.ndarray) -> bytes:
    """A request body in application/x-npy, never pickled."""
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def from_npy(body: bytes) -> np.ndarray:
    return np.load(io.BytesIO(body), allow_pickle=False)

