#!/usr/bin/env python3
"""Build the MXNet example model: a Gluon MLP 4 -> 16 -> 3 with a softmax head (seed 0), exported as the
Module checkpoint the default model_fn loads (model-symbol.json, model-0000.params, model-shapes.json with
data shape (1, 4)), next to a copy of example/code/.
Packed as model.tar.gz (model files at the root, code/ beside them), it is what SageMaker expects.

    python mxnet/example/build_model.py OUT_DIR

Needs mxnet 1.9.1 (the .venv/mxnet interpreter).
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import mxnet as mx
from mxnet import gluon

HERE = Path(__file__).resolve().parent


class Classifier(gluon.HybridBlock):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.hidden = gluon.nn.Dense(16, activation="relu", in_units=4)
            self.out = gluon.nn.Dense(3, in_units=16)

    def hybrid_forward(self, F, x):
        return F.softmax(self.out(self.hidden(x)))


def build(out_dir: Path) -> Path:
    mx.random.seed(0)
    out_dir.mkdir(parents=True, exist_ok=True)
    net = Classifier()
    net.initialize(mx.init.Xavier())
    net.hybridize()
    net(mx.nd.zeros((1, 4)))
    net.export(str(out_dir / "model"), epoch=0)
    (out_dir / "model-shapes.json").write_text(json.dumps([{"name": "data", "shape": [1, 4]}]))
    shutil.copytree(HERE / "code", out_dir / "code", dirs_exist_ok=True, ignore=shutil.ignore_patterns("__*"))
    return out_dir


if __name__ == "__main__":
    print(build(Path(sys.argv[1] if len(sys.argv) > 1 else sys.exit(__doc__))))
