"""Request JSON -> numpy tensors exactly as TF Serving's FillPredictRequestFromJson() does it (spec §9.2, §9.3).

Clients (and smserve's own tests) compare status codes and error texts with the real server's, so this module
reproduces TF Serving's checks rather than what would be natural in Python. Valid bodies take a vectorised path
(numpy); only bodies that are invalid, use NaN/Infinity, or hold values numpy cannot type safely go through the
slow, element-by-element path that yields TF Serving's exact error for the first offending value.

TensorFlow is not imported here: dtypes are TensorFlow DataType enum numbers (dtypes.py), so the module (and its
unit tests) stay cheap. Parsing lives in json_parsing.py, response bodies in json_responses.py.
"""

from __future__ import annotations

import base64
import binascii
import enum
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from .dtypes import (DT_BOOL, DT_DOUBLE, DT_FLOAT, DT_HALF, DT_INT8, DT_INT16, DT_INT32, DT_INT64, DT_STRING,
                     DT_UINT8, DT_UINT32, DT_UINT64, INT32_MAX, INT32_MIN, INT64_MAX, INT64_MIN, NUMPY_BY_DTYPE,
                     UINT32_MAX, UINT64_MAX, datatype_enum, datatype_name)
from .errors import BackendError, Code, invalid_argument
from .json_values import document_error, json_type_name, json_value_text

_DECIMAL_DTYPES = (DT_FLOAT, DT_DOUBLE, DT_HALF)
_INT32_FAMILY = (DT_INT32, DT_INT16, DT_INT8, DT_UINT8)


class RequestFormat(enum.Enum):
    """Which predict request layout was used; the response mirrors it (§9.3)."""

    ROW = "instances"
    COLUMNAR = "inputs"


def is_base64_object(value: Any) -> bool:
    """IsValBase64Object(): exactly one key, "b64", holding a string."""
    return type(value) is dict and len(value) == 1 and isinstance(value.get("b64"), str)


def _is_named_object(value: Any) -> bool:
    return type(value) is dict and not is_base64_object(value)


_WHITESPACE_BYTES = re.compile(rb"[ \t\n\v\f\r]+")
_BASE64_BODY = re.compile(rb"[A-Za-z0-9+/]*")


def decode_base64_text(text: str) -> bytes:
    """absl::Base64Unescape: standard alphabet, whitespace ignored, padding ('=' or '.') optional."""
    data = _WHITESPACE_BYTES.sub(b"", text.encode("utf-8", "surrogateescape"))
    data = data.rstrip(b"=.")
    if not _BASE64_BODY.fullmatch(data) or len(data) % 4 == 1:
        raise invalid_argument("Unable to base64 decode")
    try:
        return base64.b64decode(data + b"=" * (-len(data) % 4), validate=True)
    except binascii.Error:
        raise invalid_argument("Unable to base64 decode") from None


def _decode_base64_object(value: Any) -> bytes:
    if not is_base64_object(value):
        raise invalid_argument(f"JSON Value: {json_value_text(value)} not formatted correctly for base64 data")
    return decode_base64_text(value["b64"])


def _type_error(value: Any, dtype: int) -> BackendError:
    return invalid_argument(f"JSON Value: {json_value_text(value)} Type: {json_type_name(value)} "
                            f"is not of expected type: {datatype_name(dtype)}")


def _scalar_for_dtype(value: Any, dtype: int) -> Any:
    """AddValueToTensor(): the JSON value as the Python scalar numpy will store, or TF Serving's error."""
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if dtype in _DECIMAL_DTYPES:
        if not is_number:
            raise _type_error(value, dtype)
        return float(value)
    if dtype in _INT32_FAMILY:
        if not (type(value) is int and INT32_MIN <= value <= INT32_MAX):
            raise _type_error(value, dtype)
        return value
    if dtype == DT_STRING:
        if not isinstance(value, str):
            raise _type_error(value, dtype)
        return value.encode("utf-8", "surrogateescape")
    if dtype == DT_INT64:
        if not (type(value) is int and INT64_MIN <= value <= INT64_MAX):
            raise _type_error(value, dtype)
        return value
    if dtype == DT_BOOL:
        if not isinstance(value, bool):
            raise _type_error(value, dtype)
        return value
    if dtype == DT_UINT32:
        if not (type(value) is int and 0 <= value <= UINT32_MAX):
            raise _type_error(value, dtype)
        return value
    if dtype == DT_UINT64:
        if not (type(value) is int and 0 <= value <= UINT64_MAX):
            raise _type_error(value, dtype)
        return value
    raise BackendError(Code.UNIMPLEMENTED,
                       f"Conversion of JSON Value: {json_value_text(value)} to type: {datatype_name(dtype)}")


def _dense_shape(value: Any) -> tuple[int, ...]:
    """GetDenseTensorShape(): follows first elements only; the fill step validates the rest."""
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return tuple(shape)


def shape_text(shape: Sequence[int]) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


def _fill_values(value: Any, level: int, dtype: int, shape: tuple[int, ...], out: list) -> None:
    """FillTensorProto(): walk one JSON value, checking nesting and types, appending flat values."""
    rank = len(shape)
    if not isinstance(value, list):
        if level != rank:
            raise invalid_argument(f"JSON Value: {json_value_text(value)} found at incorrect level: {level + 1} "
                                   f"in the JSON DOM. Expected at level: {rank}")
        if isinstance(value, dict):
            if dtype != DT_STRING:
                raise _type_error(value, dtype)
            out.append(_decode_base64_object(value))
        else:
            out.append(_scalar_for_dtype(value, dtype))
        return
    if level >= rank:
        raise invalid_argument(f"Encountered list at unexpected level: {level} expected < {rank}")
    if len(value) != shape[level]:
        raise invalid_argument(f"Encountered list at unexpected size: {len(value)} at level: {level} "
                               f"expected size: {shape[level]}")
    for item in value:
        _fill_values(item, level + 1, dtype, shape, out)


def _array_from_values(values: list, dtype: int, shape: tuple[int, ...]) -> np.ndarray:
    if dtype == DT_STRING:
        array = np.empty(len(values), dtype=object)
        array[:] = values
        return array.reshape(shape)
    if dtype in _DECIMAL_DTYPES:
        with np.errstate(over="ignore"):
            return np.array(values, dtype=np.float64).astype(NUMPY_BY_DTYPE[dtype]).reshape(shape)
    if dtype in _INT32_FAMILY:
        return np.array(values, dtype=np.int64).astype(NUMPY_BY_DTYPE[dtype]).reshape(shape)
    return np.array(values, dtype=NUMPY_BY_DTYPE[dtype]).reshape(shape)


def _fast_array(value: Any, dtype: int, has_bool_tokens: Callable[[], bool]) -> np.ndarray | None:
    """A typed array straight from numpy when numpy's own inference proves TF Serving would accept every value."""
    try:
        array = np.asarray(value)
    except (ValueError, OverflowError, TypeError):
        return None
    if array.size == 0:
        return None
    kind = array.dtype.kind
    if dtype == DT_BOOL:
        return array if kind == "b" else None
    if kind not in "iuf" or has_bool_tokens():  # numpy silently turns true/false into numbers
        return None
    if dtype in _DECIMAL_DTYPES:
        with np.errstate(over="ignore"):
            if kind != "f":
                array = array.astype(np.float64)
            return array.astype(NUMPY_BY_DTYPE[dtype])
    if kind == "f":
        return None
    if dtype in _INT32_FAMILY:
        low, high = INT32_MIN, INT32_MAX
    elif dtype == DT_INT64:
        low, high = INT64_MIN, INT64_MAX
    elif dtype == DT_UINT32:
        low, high = 0, UINT32_MAX
    elif dtype == DT_UINT64:
        low, high = 0, UINT64_MAX
    else:
        return None
    if int(array.min()) < low or int(array.max()) > high:
        return None
    return array.astype(NUMPY_BY_DTYPE[dtype])


class _BoolTokenProbe:
    """Whether the raw body mentions true/false at all; computed once, only when a numeric fast path needs it."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.answer: bool | None = None

    def __call__(self) -> bool:
        if self.answer is None:
            self.answer = b"true" in self.body or b"false" in self.body
        return self.answer


InputSpecs = Mapping[str, Any]  # input name -> object with a `.dtype` (tf.DType, numpy dtype or enum number)


def _input_dtypes(input_specs: InputSpecs) -> dict[str, int]:
    return {name: datatype_enum(getattr(spec, "dtype", spec)) for name, spec in input_specs.items()}


def require_object(document: Any) -> dict:
    """ParseJson() insists on a top-level object."""
    if type(document) is not dict:
        raise document_error(document, "Is not object")
    return document


def signature_name_of(document: dict) -> str:
    """FillSignature(): optional, must be a string; empty means serving_default."""
    if "signature_name" not in document:
        return ""
    name = document["signature_name"]
    if not isinstance(name, str):
        raise invalid_argument(f"JSON Value: {json_value_text(document)} not formatted correctly. "
                               "'signature_name' key must be a string value.")
    return name


def predict_inputs_from_json(document: dict, input_specs: InputSpecs, body: bytes = b""
                             ) -> tuple[RequestFormat, dict[str, np.ndarray]]:
    """The instances/inputs part of FillPredictRequestFromJson(); `body` lets the fast path rule out booleans."""
    dtypes = _input_dtypes(input_specs)
    bool_probe = _BoolTokenProbe(body) if body else (lambda: True)
    if "instances" in document:
        if "inputs" in document:
            raise document_error(document, "Not formatted correctly expecting only one of 'inputs' or "
                                          "'instances' keys to exist ")
        instances = document["instances"]
        if not isinstance(instances, list):
            raise document_error(document, "Excepting 'instances' to be an list/array")
        if not instances:
            raise document_error(document, "No values in 'instances' array")
        tensors = _instances_fast(instances, dtypes, bool_probe)
        if tensors is None:
            tensors = _instances_exact(instances, dtypes)
        return RequestFormat.ROW, tensors
    if "inputs" in document:
        return RequestFormat.COLUMNAR, _inputs_to_tensors(document["inputs"], dtypes, bool_probe)
    raise invalid_argument("Missing 'inputs' or 'instances' key")


def _instances_fast(instances: list, dtypes: dict[str, int], bool_probe: Callable[[], bool]
                    ) -> dict[str, np.ndarray] | None:
    first = instances[0]
    if len(dtypes) == 1 and type(first) is not dict:
        (name, dtype), = dtypes.items()
        array = _fast_array(instances, dtype, bool_probe)
        return None if array is None or array.ndim == 0 else {name: array}
    if not _is_named_object(first):
        return None
    names = dtypes.keys()
    for element in instances:
        if type(element) is not dict or element.keys() != names:
            return None
    tensors = {}
    for name, dtype in dtypes.items():
        array = _fast_array([element[name] for element in instances], dtype, bool_probe)
        if array is None:
            return None
        tensors[name] = array
    return tensors


def _instances_exact(instances: list, dtypes: dict[str, int]) -> dict[str, np.ndarray]:
    """FillTensorMapFromInstancesList(), value by value, for TF Serving's error on the first bad value."""
    first = instances[0]
    if type(first) is not dict and len(dtypes) > 1:
        raise invalid_argument("instances is a plain list, but expecting list of objects as multiple input "
                               "tensors required as per tensorinfo_map")
    elements_are_objects = _is_named_object(first)
    input_names = sorted(dtypes)
    values: dict[str, list] = {}
    sizes: dict[str, int] = {}
    shapes: dict[str, tuple[int, ...]] = {}

    def add_item(item: Any, name: str) -> None:
        if name not in dtypes:
            raise invalid_argument(f"JSON object: does not have named input: {name}")
        shape = _dense_shape(item)
        collected = values.setdefault(name, [])
        before = len(collected)
        _fill_values(item, 0, dtypes[name], shape, collected)
        size = len(collected) - before
        if name not in sizes:
            sizes[name], shapes[name] = size, shape
        elif sizes[name] != size:
            raise invalid_argument(f"Expecting tensor size: {sizes[name]} but got: {size}")
        elif shapes[name] != shape:
            raise invalid_argument(f"Expecting shape {shape_text(shapes[name])} but got: {shape_text(shape)}")

    for index, element in enumerate(instances):
        if elements_are_objects:
            if not _is_named_object(element):
                raise invalid_argument(f"Expecting object but got list at item {index} of input list")
            for name, item in element.items():
                try:
                    add_item(item, name)
                except BackendError as error:
                    raise invalid_argument(f"Failed to process element: {index} key: {name} of 'instances' list. "
                                           f"Error: {error.status_text()}") from None
            if sorted(element) != input_names:
                raise invalid_argument(f"Failed to process element: {index} of 'instances' list. JSON object: "
                                       f"{json_value_text(element)} keys must be equal to: {','.join(input_names)}")
        else:
            if _is_named_object(element):
                raise invalid_argument(f"Expecting value/list but got object at item {index} of input list")
            try:
                add_item(element, input_names[0])
            except BackendError as error:
                raise invalid_argument(f"Failed to process element: {index} of 'instances' list. "
                                       f"Error: {error.status_text()}") from None
    count = len(instances)
    return {name: _array_from_values(collected, dtypes[name], (count, *shapes[name]))
            for name, collected in values.items()}


def _inputs_to_tensors(value: Any, dtypes: dict[str, int], bool_probe: Callable[[], bool]
                       ) -> dict[str, np.ndarray]:
    """FillTensorMapFromInputsMap(): a plain value/list for one input, else an object naming every input."""
    if not isinstance(value, dict) or is_base64_object(value):
        if len(dtypes) > 1:
            raise invalid_argument("inputs is a plain value/list, but expecting an object as multiple input "
                                   "tensors required as per tensorinfo_map")
        (name, dtype), = dtypes.items()
        return {name: _column_tensor(value, dtype, bool_probe)}
    tensors = {}
    for name in sorted(dtypes):
        if name not in value:
            raise invalid_argument(f"Missing named input: {name} in 'inputs' object.")
        tensors[name] = _column_tensor(value[name], dtypes[name], bool_probe)
    return tensors


def _column_tensor(value: Any, dtype: int, bool_probe: Callable[[], bool]) -> np.ndarray:
    array = _fast_array(value, dtype, bool_probe)
    if array is not None:
        return array
    shape = _dense_shape(value)
    collected: list = []
    _fill_values(value, 0, dtype, shape, collected)
    return _array_from_values(collected, dtype, shape)
