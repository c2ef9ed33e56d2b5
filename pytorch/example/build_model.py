#!/usr/bin/env python3
"""Build the PyTorch example model: a TorchScript MLP 4 -> 16 -> 2 (seed 0) as model.pt, next to a copy of
example/code/.
Packed as model.tar.gz (model files at the root, code/ beside them), it is what SageMaker expects.

    python pytorch/example/build_model.py OUT_DIR

Needs torch (the .venv/pytorch interpreter). `make demo` serves the result in the pytorch image.
"""
from __future__ import annotations

import shutil
import sys
import warnings
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def build(out_dir: Path) -> Path:
    torch.manual_seed(0)
    out_dir.mkdir(parents=True, exist_ok=True)
    net = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2)).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.script's deprecation notice
        torch.jit.script(net).save(str(out_dir / "model.pt"))
    shutil.copytree(HERE / "code", out_dir / "code", dirs_exist_ok=True, ignore=shutil.ignore_patterns("__*"))
    return out_dir


if __name__ == "__main__":
    print(build(Path(sys.argv[1] if len(sys.argv) > 1 else sys.exit(__doc__))))
