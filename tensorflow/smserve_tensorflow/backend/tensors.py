"""JSON <-> tensors exactly as TF Serving's util/json_tensor.cc does it (spec §9.2-§9.4).

TF Serving parses with rapidjson and writes with rapidjson's PrettyWriter; clients (and smserve's own tests) compare
status codes, error texts and number text with the real server's, so this module reproduces that behaviour rather
than what would be natural in Python. Valid bodies take a vectorised path (orjson + numpy); only bodies that are
invalid, use NaN/Infinity, or hold values numpy cannot type safely go through the slow, element-by-element path
that yields TF Serving's exact error for the first offending value.

TensorFlow is not imported here: dtypes are TensorFlow DataType enum numbers, so the module (and its unit tests)
stay cheap.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import math
import re
import struct
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import orjson

from .errors import BackendError, Code, invalid_argument

# ----------------------------------------------------------------------------------------------------------------
# DataType enum numbers (tensorflow/core/framework/types.proto) and their DataTypeString() names.

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

_NUMPY_BY_DTYPE: dict[int, Any] = {
    DT_FLOAT: np.float32, DT_DOUBLE: np.float64, DT_HALF: np.float16, DT_INT32: np.int32, DT_INT16: np.int16,
    DT_INT8: np.int8, DT_UINT8: np.uint8, DT_INT64: np.int64, DT_UINT32: np.uint32, DT_UINT64: np.uint64,
    DT_BOOL: np.bool_, DT_STRING: object, DT_UINT16: np.uint16, DT_COMPLEX64: np.complex64,
    DT_COMPLEX128: np.complex128,
}
_DTYPE_BY_NUMPY = {np.dtype(kind): number for number, kind in _NUMPY_BY_DTYPE.items() if kind is not object}

_DECIMAL_DTYPES = (DT_FLOAT, DT_DOUBLE, DT_HALF)
_INT32_FAMILY = (DT_INT32, DT_INT16, DT_INT8, DT_UINT8)

_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_UINT32_MAX, _UINT64_MAX = 2**32 - 1, 2**64 - 1


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


class RequestFormat(enum.Enum):
    """Which predict request layout was used; the response mirrors it (§9.3)."""

    ROW = "instances"
    COLUMNAR = "inputs"


# ----------------------------------------------------------------------------------------------------------------
# Number text (§9.4): absl::StrCat (six significant digits, %g) unless that does not read back to the same value,
# then max_digits10; '.0' is appended to text with neither '.' nor 'e'.

def format_decimal(value: float, double: bool = False) -> str:
    """TF Serving's WriteDecimal text for one float (float32 semantics unless `double`)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "-Infinity" if value < 0 else "Infinity"
    if not double:
        with np.errstate(over="ignore"):
            value = float(np.float32(value))
        if math.isinf(value):
            return "-Infinity" if value < 0 else "Infinity"
    text = "%g" % value
    read_back = float(text) if double else float(np.float32(float(text)))
    if read_back != value:
        text = ("%.17g" if double else "%.9g") % value
    if "." not in text and "e" not in text:
        text += ".0"
    return text


def _bulk_format(pattern: str, values: list[float]) -> list[str]:
    """`pattern % v` for many values in one C-level formatting call."""
    tokens = ((pattern + "\n") * len(values) % tuple(values)).split("\n")
    tokens.pop()
    return tokens


def _six_digits_read_back(wide: np.ndarray, finite: np.ndarray) -> np.ndarray:
    """For float32 values (held as float64): does the 6-significant-digit text read back as the same float32?

    Rounding numerically instead of printing and re-parsing is exact here: a 6-digit decimal is never within
    double rounding error of a float32 rounding boundary.
    """
    magnitude = np.where(finite & (wide != 0), np.abs(wide), 1.0)
    exponent = np.floor(np.log10(magnitude))
    exponent += magnitude >= 10.0 ** (exponent + 1)
    exponent -= magnitude < 10.0 ** exponent
    shift = 5 - exponent
    power = 10.0 ** np.abs(shift)
    up = shift >= 0
    rounded = np.where(up, np.round(magnitude * power) / power, np.round(magnitude / power) * power)
    return finite & (rounded.astype(np.float32) == magnitude.astype(np.float32))


_FLOAT32 = struct.Struct("f")
_SMALL_ARRAY = 32  # below this, numpy's per-call overhead costs more than formatting value by value


def _few_decimal_tokens(values: list[float], double: bool) -> list[str]:
    """format_decimal for a short list of values (float32 values given as exact doubles)."""
    pack, unpack = _FLOAT32.pack, _FLOAT32.unpack
    tokens = []
    for value in values:
        if value != value:
            tokens.append("NaN")
            continue
        if value in (math.inf, -math.inf):
            tokens.append("Infinity" if value > 0 else "-Infinity")
            continue
        text = "%g" % value
        read_back = float(text) if double else unpack(pack(float(text)))[0]
        if read_back != value:
            text = ("%.17g" if double else "%.9g") % value
        if "." not in text and "e" not in text:
            text += ".0"
        tokens.append(text)
    return tokens


def _decimal_tokens(flat: np.ndarray) -> list[str]:
    """format_decimal for a whole array, with bulk C formatting; half prints like float (spec §9.4)."""
    double = flat.dtype == np.float64
    count = flat.size
    if count == 0:
        return []
    if count <= _SMALL_ARRAY:
        values = flat.tolist() if double or flat.dtype == np.float32 else flat.astype(np.float32).tolist()
        return _few_decimal_tokens(values, double)
    tokens = np.empty(count, dtype=object)
    with np.errstate(all="ignore"):
        wide = flat if double else flat.astype(np.float64)
        finite = np.isfinite(wide)
        if double:
            tokens[:] = _bulk_format("%g", wide.tolist())
            read_back = np.array(tokens.tolist(), dtype=np.float64)
            long_form = np.flatnonzero(finite & (read_back != wide))
        else:
            short = _six_digits_read_back(wide, finite)
            short_form = np.flatnonzero(short)
            if short_form.size:
                tokens[short_form] = _bulk_format("%g", wide[short_form].tolist())
            long_form = np.flatnonzero(finite & ~short)
        if long_form.size:
            tokens[long_form] = _bulk_format("%.17g" if double else "%.9g", wide[long_form].tolist())
        whole = np.flatnonzero(finite & (wide == np.floor(wide)))
    for i in whole.tolist():
        text = tokens[i]
        if "." not in text and "e" not in text:
            tokens[i] = text + ".0"
    if not finite.all():
        for i in np.flatnonzero(~finite).tolist():
            value = wide[i]
            tokens[i] = "NaN" if value != value else ("-Infinity" if value < 0 else "Infinity")
    return tokens.tolist()


# ----------------------------------------------------------------------------------------------------------------
# rapidjson PrettyWriter emulation (4-space indent; kFormatSingleLineArray where TF Serving sets it).

_ESCAPED_CHARACTER = re.compile(r'[\x00-\x1f"\\]')
_SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_character(match: re.Match[str]) -> str:
    character = match.group()
    return _SHORT_ESCAPES.get(character) or "\\u%04X" % ord(character)


def json_string(text: str) -> str:
    """A JSON string literal as rapidjson writes it: only '"', '\\' and control characters are escaped."""
    return '"' + _ESCAPED_CHARACTER.sub(_escape_character, text) + '"'


def _indent(depth: int) -> str:
    return "    " * depth


class _WriterStopped(Exception):
    """rapidjson's Writer refuses NaN/Infinity in Double(); Accept() then stops, leaving partial text."""


class _PrettyWriter:
    """Just enough of rapidjson::PrettyWriter to print request values the way TF Serving's errors quote them."""

    __slots__ = ("parts", "levels")

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.levels: list[list] = []  # [in_array, value_count]

    def _prefix(self) -> None:
        if not self.levels:
            return
        level = self.levels[-1]
        if level[0]:
            if level[1] > 0:
                self.parts.append(",")
            self.parts.append("\n" + _indent(len(self.levels)))
        else:
            if level[1] > 0:
                self.parts.append(",\n" if level[1] % 2 == 0 else ": ")
            else:
                self.parts.append("\n")
            if level[1] % 2 == 0:
                self.parts.append(_indent(len(self.levels)))
        level[1] += 1

    def raw(self, text: str) -> None:
        self._prefix()
        self.parts.append(text)

    def start(self, in_array: bool) -> None:
        self._prefix()
        self.parts.append("[" if in_array else "{")
        self.levels.append([in_array, 0])

    def end(self) -> None:
        in_array, count = self.levels.pop()
        if count:
            self.parts.append("\n" + _indent(len(self.levels)))
        self.parts.append("]" if in_array else "}")

    def accept(self, value: Any) -> None:
        if value is None:
            self.raw("null")
        elif value is True:
            self.raw("true")
        elif value is False:
            self.raw("false")
        elif isinstance(value, str):
            self.raw(json_string(value))
        elif isinstance(value, list):
            self.start(True)
            for item in value:
                self.accept(item)
            self.end()
        elif isinstance(value, dict):
            self.start(False)
            for key, item in value.items():
                self.raw(json_string(key))
                self.accept(item)
            self.end()
        elif is_json_double(value):
            number = float(value)
            if math.isnan(number) or math.isinf(number):
                self._prefix()
                raise _WriterStopped
            self.raw(_rapidjson_double_text(number))
        else:
            self.raw(str(value))

    def text(self) -> str:
        return "".join(self.parts)


def _rapidjson_double_text(number: float) -> str:
    """rapidjson Writer::Double text: shortest digits, laid out by its Prettify() (e.g. 1e30, 1.5e-7, 3.0)."""
    if number == 0:
        return "-0.0" if math.copysign(1.0, number) < 0 else "0.0"
    sign = "-" if number < 0 else ""
    mantissa, _, exponent_text = repr(abs(number)).partition("e")
    integer_part, _, fraction_part = mantissa.partition(".")
    digits = (integer_part + fraction_part).lstrip("0")
    exponent = (int(exponent_text) if exponent_text else 0) - len(fraction_part)
    stripped = digits.rstrip("0")
    exponent += len(digits) - len(stripped)
    digits = stripped
    length = len(digits)
    point = length + exponent  # 10^(point-1) <= value < 10^point
    if 0 <= exponent and point <= 21:
        text = digits + "0" * exponent + ".0"
    elif 0 < point <= 21:
        text = digits[:point] + "." + digits[point:]
    elif -6 < point <= 0:
        text = "0." + "0" * -point + digits
    elif point < -324:
        text = "0.0"
    elif length == 1:
        text = digits + "e" + str(point - 1)
    else:
        text = digits[0] + "." + digits[1:] + "e" + str(point - 1)
    return sign + text


# ----------------------------------------------------------------------------------------------------------------
# Request values as rapidjson types them.

def is_json_double(value: Any) -> bool:
    """rapidjson keeps integers that fit int64/uint64 as integers and everything else as double."""
    if isinstance(value, float):
        return True
    return isinstance(value, int) and not isinstance(value, bool) and not _INT64_MIN <= value <= _UINT64_MAX


def json_type_name(value: Any) -> str:
    """JsonTypeString() of json_tensor.cc."""
    if value is None:
        return "Null"
    if value is True:
        return "True"
    if value is False:
        return "False"
    if isinstance(value, dict):
        return "Object"
    if isinstance(value, list):
        return "Array"
    if isinstance(value, str):
        return "String"
    return "Number"


_FLOAT_RANGE = 3.4028234e38  # rapidjson Value::IsFloat() bound


def json_value_text(value: Any) -> str:
    """JsonValueToString(): how TF Serving quotes a request value in error messages."""
    if is_json_double(value):
        number = float(value)
        if -_FLOAT_RANGE <= number <= _FLOAT_RANGE:
            return format_decimal(number)
        return format_decimal(number, double=True)
    writer = _PrettyWriter()
    try:
        writer.accept(value)
    except _WriterStopped:
        pass
    return writer.text()


def document_error(document: Any, *parts: object) -> BackendError:
    """FormatError(): TF Serving quotes the whole request document before saying what is wrong with it."""
    return invalid_argument("JSON Value: " + json_value_text(document) + " " + "".join(str(p) for p in parts))


# ----------------------------------------------------------------------------------------------------------------
# Parsing request bodies.

_PARSE_ERRORS = {
    "empty": "The document is empty.",
    "not_singular": "The document root must not be followed by other values.",
    "value": "Invalid value.",
    "name": "Missing a name for object member.",
    "colon": "Missing a colon after a name of object member.",
    "object_comma": "Missing a comma or '}' after an object member.",
    "array_comma": "Missing a comma or ']' after an array element.",
    "hex": "Incorrect hex digit after \\u escape in string.",
    "surrogate": "The surrogate pair in string is invalid.",
    "escape": "Invalid escape character in string.",
    "quote": "Missing a closing quotation mark in string.",
    "too_big": "Number too big to be stored in double.",
    "fraction": "Miss fraction part in number.",
    "exponent": "Miss exponent in number.",
}

# What orjson rejects but Python's json accepts differently from rapidjson, so those bodies go to _RapidJsonReader.
_NEEDS_EXACT_READER = re.compile(rb"\\u[dD][89a-fA-F]|[eE]\+?0*[1-9][0-9]{2}|[0-9]{300}|\x00")


def _rapidjson_int(text: str) -> int | float:
    number = int(text)
    return number if _INT64_MIN <= number <= _UINT64_MAX else float(number)


def parse_json_document(body: bytes) -> Any:
    """Parse a request body like ParseJson() does, with its exact error texts (§9.2)."""
    if not body:
        raise invalid_argument("JSON Parse error: The document is empty")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    if not _NEEDS_EXACT_READER.search(body):
        try:
            return json.loads(body, parse_int=_rapidjson_int)
        except (ValueError, RecursionError):
            pass
    return _RapidJsonReader(body).parse()


class _RapidJsonReader:
    """rapidjson's reader (kParseNanAndInfFlag) for bodies the fast parsers reject: same errors, same offsets."""

    _WHITESPACE = frozenset(b" \n\r\t")
    _SIMPLE_ESCAPES = {ord('"'): b'"', ord("\\"): b"\\", ord("/"): b"/", ord("b"): b"\b", ord("f"): b"\f",
                       ord("n"): b"\n", ord("r"): b"\r", ord("t"): b"\t"}
    _PLAIN_STRING_RUN = re.compile(rb'[^"\\\x00-\x1f]*')
    _DIGITS = re.compile(rb"[0-9]*")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.end = len(data)
        self.at = 0
        for byte in (0xEF, 0xBB, 0xBF):  # EncodedInputStream<UTF8, MemoryStream> skips a BOM byte by byte
            if self.peek() == byte:
                self.at += 1

    def peek(self) -> int:
        return self.data[self.at] if self.at < self.end else 0

    def consume(self, character: str) -> bool:
        if self.peek() == ord(character):
            self.at += 1
            return True
        return False

    def fail(self, kind: str, offset: int) -> BackendError:
        return invalid_argument(f"JSON Parse error: {_PARSE_ERRORS[kind]} at offset: {offset}")

    def skip_whitespace(self) -> None:
        while self.at < self.end and self.data[self.at] in self._WHITESPACE:
            self.at += 1

    def parse(self) -> Any:
        self.skip_whitespace()
        if self.peek() == 0:
            raise self.fail("empty", self.at)
        try:
            value = self.value()
        except RecursionError:
            raise invalid_argument("JSON Parse error: nesting too deep") from None
        self.skip_whitespace()
        if self.peek() != 0:
            raise self.fail("not_singular", self.at)
        return value

    def value(self) -> Any:
        character = self.peek()
        if character == ord("n"):
            return self.literal("null", None)
        if character == ord("t"):
            return self.literal("true", True)
        if character == ord("f"):
            return self.literal("false", False)
        if character == ord('"'):
            return self.string()
        if character == ord("{"):
            return self.object()
        if character == ord("["):
            return self.array()
        return self.number()

    def literal(self, word: str, value: Any) -> Any:
        self.at += 1
        for character in word[1:]:
            if not self.consume(character):
                raise self.fail("value", self.at)
        return value

    def object(self) -> dict:
        self.at += 1
        result: dict = {}
        self.skip_whitespace()
        if self.consume("}"):
            return result
        while True:
            if self.peek() != ord('"'):
                raise self.fail("name", self.at)
            key = self.string()
            self.skip_whitespace()
            if not self.consume(":"):
                raise self.fail("colon", self.at)
            self.skip_whitespace()
            result[key] = self.value()
            self.skip_whitespace()
            if self.consume(","):
                self.skip_whitespace()
            elif self.consume("}"):
                return result
            else:
                raise self.fail("object_comma", self.at)

    def array(self) -> list:
        self.at += 1
        result: list = []
        self.skip_whitespace()
        if self.consume("]"):
            return result
        while True:
            result.append(self.value())
            self.skip_whitespace()
            if self.consume(","):
                self.skip_whitespace()
            elif self.consume("]"):
                return result
            else:
                raise self.fail("array_comma", self.at)

    def hex4(self, escape_offset: int) -> int:
        code_point = 0
        for _ in range(4):
            character = self.peek()
            if 0x30 <= character <= 0x39:
                digit = character - 0x30
            elif 0x41 <= character <= 0x46:
                digit = character - 0x41 + 10
            elif 0x61 <= character <= 0x66:
                digit = character - 0x61 + 10
            else:
                raise self.fail("hex", escape_offset)
            code_point = code_point * 16 + digit
            self.at += 1
        return code_point

    def string(self) -> str:
        self.at += 1
        out = bytearray()
        while True:
            run = self._PLAIN_STRING_RUN.match(self.data, self.at)
            out += run.group()
            self.at = run.end()
            character = self.peek()
            if character == ord("\\"):
                escape_offset = self.at
                self.at += 1
                escaped = self.peek()
                if escaped in self._SIMPLE_ESCAPES:
                    self.at += 1
                    out += self._SIMPLE_ESCAPES[escaped]
                elif escaped == ord("u"):
                    self.at += 1
                    code_point = self.hex4(escape_offset)
                    if 0xD800 <= code_point <= 0xDBFF:
                        if not (self.consume("\\") and self.consume("u")):
                            raise self.fail("surrogate", escape_offset)
                        low = self.hex4(escape_offset)
                        if not 0xDC00 <= low <= 0xDFFF:
                            raise self.fail("surrogate", escape_offset)
                        code_point = (((code_point - 0xD800) << 10) | (low - 0xDC00)) + 0x10000
                    out += chr(code_point).encode("utf-8", "surrogatepass")
                else:
                    raise self.fail("escape", escape_offset)
            elif character == ord('"'):
                self.at += 1
                return out.decode("utf-8", "surrogateescape")
            elif character == 0:
                raise self.fail("quote", self.at)
            else:
                raise self.fail("escape", self.at)

    def digits(self) -> bytes:
        run = self._DIGITS.match(self.data, self.at)
        self.at = run.end()
        return run.group()

    def number(self) -> Any:
        start = self.at
        minus = self.consume("-")
        character = self.peek()
        if character == ord("0"):
            self.at += 1
            integer_digits = b"0"
        elif ord("1") <= character <= ord("9"):
            integer_digits = self.digits()
        elif character in (ord("I"), ord("N")):
            if self.consume("N"):
                if self.consume("a") and self.consume("N"):
                    return math.nan
            elif self.consume("I") and self.consume("n") and self.consume("f"):
                if self.peek() == ord("i") and not all(self.consume(c) for c in "inity"):
                    raise self.fail("value", self.at)
                return -math.inf if minus else math.inf
            raise self.fail("value", self.at)
        else:
            raise self.fail("value", self.at)
        if len(integer_digits) > 308 and int(integer_digits[:-1]) >= 17976931348623157 * 10**291:
            raise self.fail("too_big", start)
        is_double = False
        fraction_digits = b""
        if self.consume("."):
            if not ord("0") <= self.peek() <= ord("9"):
                raise self.fail("fraction", self.at)
            fraction_digits = self.digits()
            is_double = True
        if self.consume("e") or self.consume("E"):
            is_double = True
            negative_exponent = False
            if not self.consume("+"):
                negative_exponent = self.consume("-")
            if not ord("0") <= self.peek() <= ord("9"):
                raise self.fail("exponent", self.at)
            exponent_digits = self.digits()
            if not negative_exponent and int(exponent_digits) > 308 + len(fraction_digits):
                raise self.fail("too_big", start)
        text = self.data[start:self.at].decode("ascii")
        if is_double:
            return float(text)
        return _rapidjson_int(text)


# ----------------------------------------------------------------------------------------------------------------
# Filling input tensors (FillPredictRequestFromJson and friends).

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
        if not (type(value) is int and _INT32_MIN <= value <= _INT32_MAX):
            raise _type_error(value, dtype)
        return value
    if dtype == DT_STRING:
        if not isinstance(value, str):
            raise _type_error(value, dtype)
        return value.encode("utf-8", "surrogateescape")
    if dtype == DT_INT64:
        if not (type(value) is int and _INT64_MIN <= value <= _INT64_MAX):
            raise _type_error(value, dtype)
        return value
    if dtype == DT_BOOL:
        if not isinstance(value, bool):
            raise _type_error(value, dtype)
        return value
    if dtype == DT_UINT32:
        if not (type(value) is int and 0 <= value <= _UINT32_MAX):
            raise _type_error(value, dtype)
        return value
    if dtype == DT_UINT64:
        if not (type(value) is int and 0 <= value <= _UINT64_MAX):
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
            return np.array(values, dtype=np.float64).astype(_NUMPY_BY_DTYPE[dtype]).reshape(shape)
    if dtype in _INT32_FAMILY:
        return np.array(values, dtype=np.int64).astype(_NUMPY_BY_DTYPE[dtype]).reshape(shape)
    return np.array(values, dtype=_NUMPY_BY_DTYPE[dtype]).reshape(shape)


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
            return array.astype(_NUMPY_BY_DTYPE[dtype])
    if kind == "f":
        return None
    if dtype in _INT32_FAMILY:
        low, high = _INT32_MIN, _INT32_MAX
    elif dtype == DT_INT64:
        low, high = _INT64_MIN, _INT64_MAX
    elif dtype == DT_UINT32:
        low, high = 0, _UINT32_MAX
    elif dtype == DT_UINT64:
        low, high = 0, _UINT64_MAX
    else:
        return None
    if int(array.min()) < low or int(array.max()) > high:
        return None
    return array.astype(_NUMPY_BY_DTYPE[dtype])


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


# ----------------------------------------------------------------------------------------------------------------
# Writing responses (MakeJsonFromTensors, MakeJsonFromClassificationResult/RegressionResult, MakeJsonFromStatus).

def _tensor_tokens(name: str, array: np.ndarray, container_depth: int) -> list[str]:
    """Every value of `array` as JSON text, flat in C order; `container_depth` places b64 objects' lines."""
    flat = array.reshape(-1)
    kind = flat.dtype.kind
    if kind == "f" and flat.dtype.itemsize <= 8:
        return _decimal_tokens(flat)
    if kind in "iu" and flat.dtype != np.uint16:
        return [str(v) for v in flat.tolist()]
    if kind == "b":
        return ["true" if v else "false" for v in flat.tolist()]
    if kind in "OSU":
        items = [v if isinstance(v, bytes) else str(v).encode("utf-8") for v in flat.tolist()]
        if name.endswith("_bytes"):
            opening = "{\n" + _indent(container_depth + 1) + '"b64": "'
            closing = '"\n' + _indent(container_depth) + "}"
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
            opening = "[\n" + _indent(depth)
            separator = ",\n" + _indent(depth)
            closing = "\n" + _indent(depth - 1) + "]"
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
    keys = {name: "\n" + _indent(3) + json_string(name) + ": " for name in arrays}
    entries = ["\n" + _indent(2) + "{" + ",".join(keys[name] + rows[name][row] for name in arrays)
               + "\n" + _indent(2) + "}" for row in range(batch_size)]
    return ('{\n    "predictions": [' + ",".join(entries) + "\n    ]\n}").encode("utf-8", "surrogateescape")


def _columnar_value(name: str, array: np.ndarray, parent_depth: int) -> str:
    tokens = _tensor_tokens(name, array, parent_depth + array.ndim)
    return _nest(tokens, array.shape, 0, parent_depth, single_line=False)[0]


def _columnar_body(arrays: dict[str, np.ndarray]) -> bytes:
    if len(arrays) == 1:
        ((name, array),) = arrays.items()
        text = '{\n    "outputs": ' + _columnar_value(name, array, 1) + "\n}"
    else:
        members = ["\n" + _indent(2) + json_string(name) + ": " + _columnar_value(name, array, 2)
                   for name, array in arrays.items()]
        text = '{\n    "outputs": {' + ",".join(members) + "\n    }\n}"
    return text.encode("utf-8", "surrogateescape")


def regress_response_body(values: np.ndarray) -> bytes:
    """MakeJsonFromRegressionResult(): one float per example under `results`."""
    tokens = _decimal_tokens(np.asarray(values, dtype=np.float32).reshape(-1))
    if not tokens:
        raise invalid_argument("Cannot convert empty RegressionResults to JSON")
    return ('{\n    "results": [' + ", ".join(tokens) + "]\n}").encode("utf-8")


def classify_response_body(labels: Sequence[Sequence[bytes]], scores: np.ndarray) -> bytes:
    """MakeJsonFromClassificationResult(): per example a list of [label, score] pairs under `results`."""
    if not labels:
        raise invalid_argument("Cannot convert empty ClassificationResults to JSON")
    score_tokens = _decimal_tokens(np.asarray(scores, dtype=np.float32).reshape(-1))
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
