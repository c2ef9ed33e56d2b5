"""Default request and response conversions for TF Serving (spec tensorflow.md §7).

This runs on every request without handler code, so it works on bytes with precompiled patterns and never
parses the JSON body: detection is textual, exactly as AWS's nginx script does it."""

from __future__ import annotations

import csv
import json
import re

from smserve.errors import BadRequest, UnsupportedMediaType
from smserve.negotiation import choose

JSON = "application/json"
JSONLINES = "application/jsonlines"
JSON_TYPES = frozenset({JSON, JSONLINES, "application/jsons"})
CSV = "text/csv"

# §7.2 step 1: a body already in TF Serving's request format.
_TFS_REQUEST = re.compile(rb'"(?:instances|inputs|examples)"\s*:')
# §7.2 step 2: a closing bracket followed (after optional whitespace) by an opening one: JSON Lines.
_JSON_LINES = re.compile(rb"[}\]]\s*[\[{]")
# §7.2 step 3: a list of lists is already a batch; AWS allows whitespace between the brackets.
_NESTED_LIST = re.compile(rb"\[\s*\[")

# §7.3: a JSON number; blanks around an unquoted number are tolerated as AWS does (Number(" 2") is 2).
# Possessive quantifiers throughout: no backtracking state per field, several times faster on a megabyte line.
_NUMBER = rb"-?+(?:0|[1-9][0-9]*+)(?:\.[0-9]++)?+(?:[eE][+-]?+[0-9]++)?+"
_BLANK = rb"[ \t]*+"
_NUMBER_FIELD_TEXT = re.compile((_BLANK + _NUMBER + _BLANK).decode())
_NUMERIC_LINE_PATTERN = _BLANK + _NUMBER + _BLANK + rb"(?:," + _BLANK + _NUMBER + _BLANK + rb")*+"
_NUMERIC_LINE = re.compile(_NUMERIC_LINE_PATTERN)
# Whole-body fast path (batch transform sends thousands of numeric lines): numeric lines, blank lines between.
_NUMERIC_BODY = re.compile(_NUMERIC_LINE_PATTERN + rb"(?:[ \t]*+\r?\n[ \t\r\n]*+" + _NUMERIC_LINE_PATTERN + rb")*+")

_INSTANCES = b'{"instances": '
_ESCAPED_INSTANCES = b"\\'instances\\'"  # TF Serving writes \'instances\' inside a JSON string
_PLAIN_INSTANCES = b"'instances'"


def media_type(content_type: str | None) -> str:
    """Bare media type: parameters stripped, lower-cased (AWS D compares this way)."""
    if not content_type:
        return ""
    return content_type.partition(";")[0].strip().lower()


def to_backend_body(body: bytes, content_type: str | None) -> bytes:
    """The TF Serving request body for a SageMaker request body of the given Content-Type."""
    kind = media_type(content_type)
    if kind in JSON_TYPES:
        convert = _json_body
    elif kind == CSV:
        convert = _csv_body
    else:
        shown = content_type.strip() if content_type and content_type.strip() else "Unknown"
        raise UnsupportedMediaType(f"Unsupported Media Type: {shown}")
    if not body.strip():
        return body  # the backend answers 400 "JSON Parse error: The document is empty", passed through (§7.4)
    return convert(body)


def _json_body(body: bytes) -> bytes:
    if _TFS_REQUEST.search(body):
        return body
    if _JSON_LINES.search(body):
        lines = [line for line in (raw.strip() for raw in body.split(b"\n")) if line]
        if len(lines) == 1:
            return _INSTANCES + lines[0] + b"}"
        return _INSTANCES + b"[" + b", ".join(lines) + b"]}"
    text = body.strip()
    if not _NESTED_LIST.match(text):
        text = b"[" + text + b"]"
    return _INSTANCES + text + b"}"


def _csv_body(body: bytes) -> bytes:
    text = body.strip()
    if _NUMERIC_BODY.fullmatch(text):
        # Only numbers, blanks, commas and line breaks: blanks cannot join two numbers, so drop them, and
        # splitting on the remaining whitespace gives the non-empty lines.
        rows = text.translate(None, b" \t\r").split()
        if b"," not in text:
            return _INSTANCES + b"[" + b",".join(rows) + b"]}"
        return _INSTANCES + b"[" + b",".join([b"[" + row + b"]" if b"," in row else row for row in rows]) + b"]}"
    rows = []
    for raw in text.split(b"\n"):
        line = raw.strip()  # also drops the \r of \r\n
        if not line:
            continue
        if _NUMERIC_LINE.fullmatch(line):
            rows.append(b"[" + line + b"]" if b"," in line else line)
        else:
            rows.append(_csv_mixed_line(line))
    return _INSTANCES + b"[" + b",".join(rows) + b"]}"


def _csv_mixed_line(line: bytes) -> bytes:
    """A line with strings or quotes: split with quote awareness, numbers bare, everything else a JSON string."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"CSV body is not valid UTF-8: {exc}") from None
    if '"' in text:
        try:
            fields = next(csv.reader((text,)), [""])
        except csv.Error as exc:
            raise BadRequest(f"invalid CSV line: {exc}") from None
    else:
        fields = text.split(",")
    values = [field.strip(" \t") if _NUMBER_FIELD_TEXT.fullmatch(field) else json.dumps(field, ensure_ascii=False)
              for field in fields]
    joined = ",".join(values)
    return (f"[{joined}]" if len(values) > 1 else joined).encode("utf-8")


def answer_content_type(accept: str | None) -> str:
    """application/jsonlines only when Accept prefers it to application/json; JSON otherwise, never a 406."""
    if not accept:
        return JSON
    return JSONLINES if choose(accept, (JSON, JSONLINES)) == JSONLINES else JSON


def backend_error_body(status: int, body: bytes) -> bytes:
    """On a 400, undo TF Serving's invalid \\' escaping of the first 'instances', as AWS does."""
    if status == 400:
        return body.replace(_ESCAPED_INSTANCES, _PLAIN_INSTANCES, 1)
    return body


def one_line(body: bytes) -> bytes:
    """The backend's JSON on a single line. Raw CR/LF cannot occur inside JSON strings, so dropping them
    keeps the document JSON-equal (AWS drops the newlines the same way)."""
    if b"\n" not in body and b"\r" not in body:
        return body
    return body.translate(None, b"\r\n")
