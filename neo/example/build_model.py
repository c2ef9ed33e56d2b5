#!/usr/bin/env python3
"""Build the Neo example model: the classifier softmax(x·Wᵀ + b) over 4 features as the TVM graph-executor
artifacts SageMaker Neo writes (compiled.so, compiled_model.json, compiled.params, compiled.meta), compiled
here from hand-written C operators (neo.md §8.2; the generator is the tests' own, neo/tests/neo_models.py),
next to a copy of example/code/. Packed as model.tar.gz, it is what SageMaker expects.

    python neo/example/build_model.py OUT_DIR

Needs gcc and numpy (the .venv/neo interpreter).
"""
from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

import neo_models  # noqa: E402


def build(out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        for path in neo_models.tvm_classifier(Path(scratch)).iterdir():
            shutil.copyfile(path, out_dir / path.name)
    shutil.copytree(HERE / "code", out_dir / "code", dirs_exist_ok=True)
    return out_dir


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    print(build(Path(sys.argv[1])))
