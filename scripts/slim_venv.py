#!/usr/bin/env python3
"""Remove build-only files from an image venv (images.md §3: no headers, no static libraries).

    python slim_venv.py /opt/smserve/venv

Only removes paths nothing imports at run time: C/C++ headers and CMake files of torch/numpy,
static archives, test suites of numpy/scipy, and stray caches. Prints what it freed.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path


def size(p: Path) -> int:
    if p.is_file() or p.is_symlink():
        return p.lstat().st_size
    return sum(f.lstat().st_size for f in p.rglob("*") if f.is_file() and not f.is_symlink())


def main(venv: str) -> int:
    sp = Path(venv) / "lib" / "python3.11" / "site-packages"
    targets: list[Path] = []
    for rel in ("torch/include", "torch/share/cmake", "numpy/_core/include",
                "numpy/core/include", "mxnet/include"):
        targets.append(sp / rel)
    for pkg in ("numpy", "scipy"):
        root = sp / pkg
        if root.is_dir():
            targets += [p for p in root.rglob("tests") if p.is_dir()]
    targets += [p for p in sp.rglob("*.a") if p.is_file()]
    targets += [p for p in sp.rglob("*.h") if p.is_file()]
    targets += [p for p in sp.rglob("*.hpp") if p.is_file()]
    freed = 0
    for t in targets:
        if not t.exists():
            continue
        freed += size(t)
        if t.is_dir():
            shutil.rmtree(t)
        else:
            t.unlink()
    print(f"slim_venv: removed {len(targets)} paths, {freed / 1e6:.1f} MB", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "/opt/smserve/venv"))
