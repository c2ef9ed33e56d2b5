"""JSON values as TF Serving's rapidjson types and prints them.

TF Serving quotes the offending request value in its error texts (JsonValueToString(), JsonTypeString(),
FormatError() of util/json_tensor.cc), printed by rapidjson's PrettyWriter and typed by rapidjson's rules (integers
that fit int64/uint64 stay integers, everything else is a double); responses escape strings the same way. This
module reproduces that text: string escaping, PrettyWriter's layout and rapidjson's double text, the value type
names and the quoted values of error messages.
"""

from __future__ import annotations

import math
import re
from typing import Any

from .decimal_text import format_decimal
from .dtypes import INT64_MIN, UINT64_MAX
from .errors import BackendError, invalid_argument

# ----------------------------------------------------------------------------------------------------------------
# rapidjson Writer/PrettyWriter emulation (4-space indent).

_ESCAPED_CHARACTER = re.compile(r'[\x00-\x1f"\\]')
_SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_character(match: re.Match[str]) -> str:
    character = match.group()
    return _SHORT_ESCAPES.get(character) or "\\u%04X" % ord(character)


def json_string(text: str) -> str:
    """A JSON string literal as rapidjson writes it: only '"', '\\' and control characters are escaped."""
    return '"' + _ESCAPED_CHARACTER.sub(_escape_character, text) + '"'


def indent(depth: int) -> str:
    """PrettyWriter's indentation: four spaces a level."""
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
            self.parts.append("\n" + indent(len(self.levels)))
        else:
            if level[1] > 0:
                self.parts.append(",\n" if level[1] % 2 == 0 else ": ")
            else:
                self.parts.append("\n")
            if level[1] % 2 == 0:
                self.parts.append(indent(len(self.levels)))
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
            self.parts.append("\n" + indent(len(self.levels)))
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
    return isinstance(value, int) and not isinstance(value, bool) and not INT64_MIN <= value <= UINT64_MAX


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
