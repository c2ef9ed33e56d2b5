"""TensorFlow DataType enum numbers, their DataTypeString() names and the numpy types that hold them.

TF Serving names dtypes in its error texts by DataTypeString() (`float`, `int64`, ...) and the gRPC API carries the
enum numbers of tensorflow/core/framework/types.proto; keeping both here, without importing TensorFlow, lets the
JSON and request code (and its unit tests) stay cheap.
"""

from __future__ import annotations

from typing import Any

import numpy as np

DT_INVALID, DT_FLOAT, DT_DOUBLE, DT_INT32, DT_UINT8, DT_INT16, DT_INT8, DT_STRING = 0, 1, 2, 3, 4, 5, 6, 7
DT_COMPLEX64, DT_INT64, DT_BOOL, DT_BFLOAT16, DT_UINT16, DT_COMPLEX128, DT_HALF = 8, 9, 10, 14, 17, 18, 19
DT_RESOURCE, DT_VARIANT, DT_UINT32, DT_UINT64 = 20, 21, 22, 23

_DTYPE_NAMES = {
    DT_INVALID: "INVALID", DT_FLOAT: "float", DT_DOUBLE: "double", DT_INT32: "int32", DT_UINT8: "uint8",
    DT_INT16: "int16", DT_INT8: "int8", DT_STRING: "string", DT_COMPLEX64: "complex64", DT_INT64: "int64",
    DT_BOOL: "bool", 11: "qint8", 12: "quint8", 13: "qint32", DT_BFLOAT16: "bfloat16", 15: "qint16",
    16: "quint16", DT_UINT16: "uint16", DT_COMPLEX128: "complex128", DT_HALF: "half", DT_RESOURCE: "resource",
    DT_VARIANT: "variant", DT_UINT32: "uint32", DT_UINT64: "uint64",
}

NUMPY_BY_DTYPE: dict[int, Any] = {
    DT_FLOAT: np.float32, DT_DOUBLE: np.float64, DT_HALF: np.float16, DT_INT32: np.int32, DT_INT16: np.int16,
    DT_INT8: np.int8, DT_UINT8: np.uint8, DT_INT64: np.int64, DT_UINT32: np.uint32, DT_UINT64: np.uint64,
    DT_BOOL: np.bool_, DT_STRING: object, DT_UINT16: np.uint16, DT_COMPLEX64: np.complex64,
    DT_COMPLEX128: np.complex128,
}
_DTYPE_BY_NUMPY = {np.dtype(kind): number for number, kind in NUMPY_BY_DTYPE.items() if kind is not object}

# Value ranges of the integer dtypes; rapidjson also keeps JSON integers in [INT64_MIN, UINT64_MAX] as integers.
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
UINT32_MAX, UINT64_MAX = 2**32 - 1, 2**64 - 1


def datatype_enum(dtype: Any) -> int:
    """TensorFlow DataType number of a tf.DType, a numpy dtype or an already numeric enum."""
    if isinstance(dtype, int):
        return dtype
    number = getattr(dtype, "as_datatype_enum", None)
    if number is not None:
        return int(number)
    numpy_dtype = np.dtype(dtype)
    if numpy_dtype.kind in "OSU":
        return DT_STRING
    return _DTYPE_BY_NUMPY.get(numpy_dtype, DT_INVALID)


def datatype_name(dtype: Any) -> str:
    """DataTypeString(): `float`, `int64`, ... as TF Serving prints it in errors."""
    number = datatype_enum(dtype)
    return _DTYPE_NAMES.get(number, f"unknown dtype enum ({number})")
