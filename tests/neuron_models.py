"""Neuron-compiled model stand-ins for the inf1 tests (neo.md §9.4): files that carry the marks a Neuron
compilation leaves (smserve/neuron.py), made without the Neuron SDK, which is not obtainable here.

- `write_neuron_torchscript`: a real TorchScript archive traced through an operator registered here under the
  `neuron` namespace, so its serialized code calls `ops.neuron.forward_v2` as torch-neuron's output does; a
  process without that operator (every smserve worker) cannot load it ("Unknown builtin op").
- `write_neuron_mxnet_symbol`: an MXNet symbol JSON with a `_neuron_subgraph_op` node (mxnet-neuron's form).
- `write_neuron_saved_model`: a SavedModel whose graph holds a `NeuronOp` node, protobuf-encoded by hand.
- `write_neuron_model`: the family's own form of the above.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from .harness import FAMILY


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, payload: bytes | str) -> bytes:
    """A length-delimited protobuf field."""
    data = payload.encode() if isinstance(payload, str) else payload
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def saved_model_bytes(ops: tuple[str, ...]) -> bytes:
    """SavedModel{schema_version 1, meta_graphs [MetaGraphDef{meta_info_def{tags ["serve"]},
    graph_def{node [NodeDef{name, op} per op]}}]} (tensorflow/core/protobuf/saved_model.proto)."""
    nodes = b"".join(_field(1, _field(1, f"node_{i}") + _field(2, op)) for i, op in enumerate(ops))
    meta_graph = _field(1, _field(4, "serve")) + _field(2, nodes)
    return _varint(1 << 3 | 0) + _varint(1) + _field(2, meta_graph)


def write_neuron_saved_model(model_dir: Path, name: str = "neuron_model", version: int = 1) -> Path:
    """<model_dir>/<name>/<version>/saved_model.pb with Placeholder -> NeuronOp -> Identity."""
    target = Path(model_dir) / name / str(version)
    (target / "variables").mkdir(parents=True, exist_ok=True)
    path = target / "saved_model.pb"
    path.write_bytes(saved_model_bytes(("Placeholder", "NeuronOp", "Identity")))
    return path


def write_neuron_mxnet_symbol(model_dir: Path, prefix: str = "compiled") -> Path:
    """<prefix>-symbol.json with a Neuron subgraph node, and an (empty) <prefix>-0000.params beside it."""
    symbol = {
        "nodes": [
            {"op": "null", "name": "data", "inputs": []},
            {"op": "_neuron_subgraph_op", "name": "_neuron_subgraph_op0", "attrs": {"input_names": "['data']"},
             "inputs": [[0, 0, 0]]},
        ],
        "arg_nodes": [0], "node_row_ptr": [0, 1, 2], "heads": [[1, 0, 0]],
        "attrs": {"mxnet_version": ["int", 10901]},
    }
    path = Path(model_dir) / f"{prefix}-symbol.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(symbol))
    (Path(model_dir) / f"{prefix}-0000.params").write_bytes(b"")
    return path


def write_neuron_torchscript(path: Path) -> Path:
    """A traced TorchScript module whose graph calls neuron::forward_v2 (registered here, once per process)."""
    import torch

    if not hasattr(torch.ops.neuron, "forward_v2"):
        library = torch.library.Library("neuron", "DEF")
        library.define("forward_v2(Tensor[] inputs, Tensor model) -> Tensor[]")
        library.impl("forward_v2", lambda inputs, model: [inputs[0] * 2], "CompositeExplicitAutograd")
        write_neuron_torchscript.library = library  # kept alive: dropping it unregisters the operator

    class Compiled(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("neff", torch.zeros(8, dtype=torch.uint8))  # where the NEFF bytes would be

        def forward(self, x):
            return torch.ops.neuron.forward_v2([x], self.neff)[0]

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit's deprecation notices
        torch.jit.save(torch.jit.trace(Compiled(), torch.ones(1, 4)), str(path))
    return path


def write_neuron_model(model_dir: Path, family: str = FAMILY) -> Path:
    """The family's Neuron-compiled form in `model_dir`; the file that carries the Neuron operators."""
    if family == "pytorch":
        return write_neuron_torchscript(Path(model_dir) / "model.pt")
    if family == "mxnet":
        return write_neuron_mxnet_symbol(model_dir)
    if family == "tensorflow":
        return write_neuron_saved_model(model_dir)
    raise ValueError(f"no Neuron form for family {family}")
