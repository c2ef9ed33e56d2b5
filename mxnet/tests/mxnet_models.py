"""Real MXNet models for the MXNet family tests (spec mxnet.md §9 archive layouts), built with mxnet 1.9.1, and
the MXNet side of the family test interface that the shared suites use (tests/families.py): ECHO_SCRIPT,
write_echo_model, write_default_model, predict_default.

Only MXNet test code imports this file (the mxnet venv has numpy 1.23 and no torch); it lives in mxnet/tests,
which pytest puts on sys.path.
"""

from __future__ import annotations

import json
from pathlib import Path

import mxnet as mx
import numpy as np
from mxnet import gluon

from tests.models import write_code

IN_UNITS, HIDDEN, OUT_UNITS = 4, 8, 3


class MLP(gluon.HybridBlock):
    """4 → 8 (relu) → 3; the network the Gluon model_fn scripts rebuild too (same class source below)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.hidden = gluon.nn.Dense(HIDDEN, activation="relu", in_units=IN_UNITS)
            self.out = gluon.nn.Dense(OUT_UNITS, in_units=HIDDEN)

    def hybrid_forward(self, F, x):
        return self.out(self.hidden(x))


class TwoHeads(gluon.HybridBlock):
    """Two outputs of different widths (3 and 2): Module.predict returns a list of two NDArrays."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.hidden = gluon.nn.Dense(HIDDEN, activation="relu", in_units=IN_UNITS)
            self.a = gluon.nn.Dense(3, in_units=HIDDEN)
            self.b = gluon.nn.Dense(2, in_units=HIDDEN)

    def hybrid_forward(self, F, x):
        h = self.hidden(x)
        return self.a(h), self.b(h)


class TwoInputs(gluon.HybridBlock):
    """Two data inputs (x: 4 wide, y: 2 wide) concatenated: a multi-input Module."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.out = gluon.nn.Dense(OUT_UNITS, in_units=6)

    def hybrid_forward(self, F, x, y):
        return self.out(F.concat(x, y, dim=1))


class Echo(gluon.HybridBlock):
    """Returns its input unchanged (no parameters): the MXNet counterpart of pytorch_models.Echo for the core
    contract suite. Inputs reach it as float32 NDArrays whatever the request dtype (mxnet.md §5)."""

    def hybrid_forward(self, F, x):
        return F.identity(x)


def _ready(net: gluon.HybridBlock, *example: mx.nd.NDArray, seed: int = 7) -> gluon.HybridBlock:
    mx.random.seed(seed)
    net.initialize(mx.init.Xavier(magnitude=2.5))
    net.hybridize()
    net(*example)  # builds the cached graph that export() writes
    return net


def export_checkpoint(model_dir: Path, net: gluon.HybridBlock | None = None,
                      shapes: list[dict] | None | bool = True) -> gluon.HybridBlock:
    """Case A (shapes=True or an explicit list) or case B (shapes=False): model-symbol.json + model-0000.params
    (+ model-shapes.json) from a hybridized Gluon block."""
    model_dir = Path(model_dir)
    if net is None:
        net = _ready(MLP(), mx.nd.zeros((1, IN_UNITS)))
    net.export(str(model_dir / "model"), epoch=0)
    if shapes is True:
        shapes = [{"name": "data", "shape": [1, IN_UNITS]}]
    if shapes:
        (model_dir / "model-shapes.json").write_text(json.dumps(shapes))
    return net


def echo_export(model_dir: Path) -> gluon.HybridBlock:
    """Case B (mxnet.md §9): the Echo block exported to model-symbol.json + model-0000.params (an empty
    parameter file) with no shapes file, so the default model_fn serves it as a gluon.SymbolBlock with the
    Gluon default input_fn/output_fn, whatever the batch and row width."""
    return export_checkpoint(model_dir, _ready(Echo(), mx.nd.zeros((1, 2))), shapes=False)


def two_heads(model_dir: Path) -> gluon.HybridBlock:
    return export_checkpoint(model_dir, _ready(TwoHeads(), mx.nd.zeros((1, IN_UNITS))))


def two_inputs(model_dir: Path) -> gluon.HybridBlock:
    net = _ready(TwoInputs(), mx.nd.zeros((1, 4)), mx.nd.zeros((1, 2)))
    return export_checkpoint(model_dir, net, [{"name": "data0", "shape": [1, 4]}, {"name": "data1", "shape": [1, 2]}])


def module_predict(model_dir: Path, rows: np.ndarray, batch: int = 1) -> np.ndarray:
    """What mxnet's own Module.predict gives for the case A checkpoint (mxnet.md §11 item 4)."""
    sym, args, aux = mx.model.load_checkpoint(str(Path(model_dir) / "model"), 0)
    module = mx.mod.Module(symbol=sym, context=mx.cpu(), data_names=["data"], label_names=None)
    module.bind(for_training=False, data_shapes=[("data", (batch, IN_UNITS))])
    module.set_params(args, aux, allow_missing=True)
    iterator = mx.io.NDArrayIter(mx.nd.array(rows), batch_size=batch, last_batch_handle="pad")
    return module.predict(iterator).asnumpy()


GLUON_MODEL_FN = '''
import os

import mxnet as mx
from mxnet import gluon


class MLP(gluon.HybridBlock):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.hidden = gluon.nn.Dense(8, activation="relu", in_units=4)
            self.out = gluon.nn.Dense(3, in_units=8)

    def hybrid_forward(self, F, x):
        return self.out(self.hidden(x))


def model_fn(model_dir):
    net = MLP()
    net.load_parameters(os.path.join(model_dir, "model.params"), ctx=mx.cpu())
    net.hybridize()
    return net
'''


def gluon_with_code(model_dir: Path, extra_code: str = "") -> gluon.HybridBlock:
    """Case C: model.params saved from a Gluon MLP plus code/inference.py whose model_fn rebuilds it."""
    net = _ready(MLP(), mx.nd.zeros((1, IN_UNITS)))
    net.save_parameters(str(Path(model_dir) / "model.params"))
    write_code(model_dir, GLUON_MODEL_FN + extra_code)
    return net


# ---------------------------------------------------------------- family test interface (tests/families.py)
# The family parts of the shared echo script (tests/contract/core_scripts.py ECHO_PREDICT_TEMPLATE).
ECHO_SCRIPT = {"framework": "mxnet as mx", "f32_tensor": "mx.nd.array([0.1], dtype=np.float32)",
               "forward": "    return model(data)"}


def write_echo_model(model_dir: Path) -> None:
    """The Echo block exported without a shapes file (mxnet.md §9 case B), served as a SymbolBlock with the
    Gluon defaults (§5)."""
    echo_export(model_dir)


def write_default_model(model_dir: Path) -> None:
    """A Module checkpoint MLP 4 -> 8 -> 3 (mxnet.md §9 case A: symbol, params and shapes, data shape (1, 4))."""
    export_checkpoint(model_dir)


def predict_default(model_dir: Path, rows: list) -> list:
    """What mxnet's own Module.predict gives for `rows` (mxnet.md §11 item 4)."""
    return module_predict(model_dir, np.asarray(rows, dtype=np.float32)).tolist()
