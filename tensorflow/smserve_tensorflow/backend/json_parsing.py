"""Request bodies parsed as TF Serving's ParseJson() parses them with rapidjson (spec §9.2).

rapidjson (with kParseNanAndInfFlag) accepts NaN/Infinity/Inf, types integers by its own int64/uint64 rule and
rejects malformed bodies with its own error texts and byte offsets, which TF Serving returns to the client. Valid
bodies go through orjson (or Python's json); the rest through a port of rapidjson's reader, so every error text and
offset is the one the real server gives.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import orjson

from .dtypes import INT64_MIN, UINT64_MAX
from .errors import BackendError, invalid_argument

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
    return number if INT64_MIN <= number <= UINT64_MAX else float(number)


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
