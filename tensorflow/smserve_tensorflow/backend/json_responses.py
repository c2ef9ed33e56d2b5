"""Response bodies exactly as TF Serving writes them with rapidjson's PrettyWriter (spec §9.3, §9.4).

MakeJsonFromTensors(), MakeJsonFromClassificationResult()/RegressionResult() and MakeJsonFromStatus() of
util/json_tensor.cc fix the body layout (4-space indent, single-line arrays inside row predictions, b64 objects for
`_bytes` outputs) and the number text; clients compare bodies byte for byte with the real server's, so this module
builds the same text directly from numpy arrays.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping, Sequence

import numpy as np

from .decimal_text import decimal_tokens
from .dtypes import datatype_name
from .errors import invalid_argument
from .json_values import indent, json_string
from .tensors import RequestFormat


def _tensor_tokens(name: str, array: np.ndarray, container_depth: int) -> list[str]:
    """Every value of `array` as JSON text, flat in C order; `container_depth` places b64 objects' lines."""
    flat = array.reshape(-1)
    kind = flat.dtype.kind
    if kind == "f" and flat.dtype.itemsize <= 8:
        return decimal_tokens(flat)
    if kind in "iu" and flat.dtype != np.uint16:
        return [str(v) for v in flat.tolist()]
    if kind == "b":
        return ["true" if v else "false" for v in flat.tolist()]
    if kind in "OSU":
        items = [v if isinstance(v, bytes) else str(v).encode("utf-8") for v in flat.tolist()]
        if name.endswith("_bytes"):
            opening = "{\n" + indent(container_depth + 1) + '"b64": "'
            closing = '"\n' + indent(container_depth) + "}"
            return [opening + base64.b64encode(v).decode("ascii") + closing for v in items]
        return [json_string(v.decode("utf-8", "surrogateescape")) for v in items]
    raise invalid_argument(f"Failed to write JSON value for tensor type: {datatype_name(flat.dtype)}")


def _nest(tokens: list[str], shape: Sequence[int], stop_depth: int, base_depth: int, single_line: bool
          ) -> list[str]:
    """Wrap flat tokens into nested arrays for dimensions >= stop_depth, as PrettyWriter lays them out."""
    items = tokens
    for dimension in range(len(shape) - 1, stop_depth - 1, -1):
        size = shape[dimension]
        groups = math.prod(shape[:dimension])
        if size == 0:
            items = ["[]"] * groups
            continue
        if single_line:
            opening, separator, closing = "[", ", ", "]"
        else:
            depth = base_depth + 1 + (dimension - stop_depth)
            opening = "[\n" + indent(depth)
            separator = ",\n" + indent(depth)
            closing = "\n" + indent(depth - 1) + "]"
        if size == 1:
            items = [opening + item + closing for item in items]
        else:
            items = [opening + separator.join(items[g * size:(g + 1) * size]) + closing for g in range(groups)]
    return items


def predict_response_body(outputs: Mapping[str, np.ndarray], request_format: RequestFormat) -> bytes:
    """MakeJsonFromTensors(): `predictions` per row for row requests, `outputs` as whole tensors for columnar."""
    if not outputs:
        raise invalid_argument("Cannot convert empty tensor map to JSON")
    names = sorted(outputs)
    arrays = {name: np.asarray(outputs[name]) for name in names}
    if request_format is RequestFormat.COLUMNAR:
        return _columnar_body(arrays)
    return _row_body(arrays)


def _row_body(arrays: dict[str, np.ndarray]) -> bytes:
    batch_size = 0
    for name, array in arrays.items():
        if array.ndim == 0:
            raise invalid_argument(f"Tensor name: {name} has no shape information ")
        current = array.shape[0]
        if current < 1:
            raise invalid_argument(f"Tensor name: {name} has invalid batch size: {current}")
        if batch_size and batch_size != current:
            raise invalid_argument(f"Tensor name: {name} has inconsistent batch size: {current} "
                                   f"expecting: {batch_size}")
        batch_size = current
    several = len(arrays) > 1
    parent_depth = 3 if several else 2
    rows = {}
    for name, array in arrays.items():
        tokens = _tensor_tokens(name, array, parent_depth + array.ndim - 1)
        rows[name] = _nest(tokens, array.shape, 1, parent_depth, single_line=True)
    if not several:
        (items,) = rows.values()
        return ('{\n    "predictions": [' + ", ".join(items) + "\n    ]\n}").encode("utf-8", "surrogateescape")
    keys = {name: "\n" + indent(3) + json_string(name) + ": " for name in arrays}
    entries = ["\n" + indent(2) + "{" + ",".join(keys[name] + rows[name][row] for name in arrays)
               + "\n" + indent(2) + "}" for row in range(batch_size)]
    return ('{\n    "predictions": [' + ",".join(entries) + "\n    ]\n}").encode("utf-8", "surrogateescape")


def _columnar_value(name: str, array: np.ndarray, parent_depth: int) -> str:
    tokens = _tensor_tokens(name, array, parent_depth + array.ndim)
    return _nest(tokens, array.shape, 0, parent_depth, single_line=False)[0]


def _columnar_body(arrays: dict[str, np.ndarray]) -> bytes:
    if len(arrays) == 1:
        ((name, array),) = arrays.items()
        text = '{\n    "outputs": ' + _columnar_value(name, array, 1) + "\n}"
    else:
        members = ["\n" + indent(2) + json_string(name) + ": " + _columnar_value(name, array, 2)
                   for name, array in arrays.items()]
        text = '{\n    "outputs": {' + ",".join(members) + "\n    }\n}"
    return text.encode("utf-8", "surrogateescape")


def regress_response_body(values: np.ndarray) -> bytes:
    """MakeJsonFromRegressionResult(): one float per example under `results`."""
    tokens = decimal_tokens(np.asarray(values, dtype=np.float32).reshape(-1))
    if not tokens:
        raise invalid_argument("Cannot convert empty RegressionResults to JSON")
    return ('{\n    "results": [' + ", ".join(tokens) + "]\n}").encode("utf-8")


def classify_response_body(labels: Sequence[Sequence[bytes]], scores: np.ndarray) -> bytes:
    """MakeJsonFromClassificationResult(): per example a list of [label, score] pairs under `results`."""
    if not labels:
        raise invalid_argument("Cannot convert empty ClassificationResults to JSON")
    score_tokens = decimal_tokens(np.asarray(scores, dtype=np.float32).reshape(-1))
    examples = []
    position = 0
    for example_labels in labels:
        pairs = []
        for label in example_labels:
            pairs.append("[" + json_string(label.decode("utf-8", "surrogateescape")) + ", "
                         + score_tokens[position] + "]")
            position += 1
        examples.append("[" + ", ".join(pairs) + "]")
    return ('{\n    "results": [' + ", ".join(examples) + "\n    ]\n}").encode("utf-8", "surrogateescape")


def error_body(message: str) -> bytes:
    """MakeJsonFromStatus(): the message, JSON-escaped, under `error`."""
    return ('{\n    "error": ' + json_string(message) + "\n}").encode("utf-8", "surrogateescape")
