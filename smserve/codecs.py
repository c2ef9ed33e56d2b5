"""Default codecs (spec core §8, §9): request bodies to numpy values and back, never through pickle."""

from __future__ import annotations

import codecs as _stdlib_codecs
import io
import json
import math
import re
import zipfile
from typing import Any

import numpy as np
import orjson

from .errors import (BadRequest, DecodedTooLarge, EncodeError, PickleRejected, UnsupportedFormatError,
                     UnsupportedMediaType)

JSON = "application/json"
CSV = "text/csv"
NPY = "application/x-npy"
NPZ = "application/x-npz"
JSONLINES = "application/jsonlines"
OCTET_STREAM = "application/octet-stream"
ANY = "*/*"
TEXT_TYPES = (JSON, CSV)  # delivered to input_fn as str (spec core §8)
ALIASES = {"application/x-jsonlines": JSONLINES}

# Decoded-size bound (docs/security.md): what decoding one body may allocate is at most DECODE_FACTOR times the
# body's size (and never less than MIN_DECODED_BOUND, so small requests are not refused for their smallness).
# Numbers in JSON or CSV decode to at most 4x their text; the amplification this stops comes from fixed-width
# string arrays, compressed NPZ members, headers that declare more data than the body holds, and densifying a
# sparse matrix. The worker sets the factor from SMSERVE_DECODE_FACTOR.
DECODE_FACTOR = 16
MIN_DECODED_BOUND = 1 << 20


def set_decode_factor(factor: int) -> None:
    global DECODE_FACTOR
    DECODE_FACTOR = factor


def decoded_bound(body_size: int) -> int:
    return max(body_size * DECODE_FACTOR, MIN_DECODED_BOUND)


def _check_bound(size: int, body_size: int, what: str) -> None:
    bound = decoded_bound(body_size)
    if size > bound:
        raise DecodedTooLarge(f"{what} would take {size:,} bytes decoded, more than {DECODE_FACTOR}x the "
                              f"{body_size:,}-byte body ({bound:,} bytes, SMSERVE_DECODE_FACTOR); send numbers, "
                              f"or a smaller or denser payload")


def media_type(header: str | None) -> tuple[str, dict[str, str]]:
    """Split a Content-Type value into the lower-case bare type (aliases resolved) and its parameters."""
    if not header:
        return "", {}
    bare, _, rest = header.partition(";")
    params = {}
    for item in rest.split(";"):
        key, sep, value = item.partition("=")
        if sep:
            params[key.strip().lower()] = value.strip().strip('"')
    bare = bare.strip().lower()
    return ALIASES.get(bare, bare), params


def body_for_input_fn(body: bytes, content_type: str | None) -> bytes | str:
    """JSON and CSV bodies reach input_fn as text decoded with their charset; everything else as bytes."""
    bare, params = media_type(content_type)
    if bare not in TEXT_TYPES:
        return body
    charset = params.get("charset", "utf-8")
    try:
        _stdlib_codecs.lookup(charset)
    except LookupError:
        raise UnsupportedMediaType(f"unknown charset {charset!r} in Content-Type {content_type!r}") from None
    try:
        text = body.decode(charset)
    except UnicodeDecodeError as exc:
        raise BadRequest(f"request body is not valid {charset}: {exc}") from None
    except LookupError:  # a codec that is no text encoding (rot13, base64, zlib)
        raise UnsupportedMediaType(f"charset {charset!r} in Content-Type {content_type!r} is not a text "
                                   f"encoding; send utf-8") from None
    return text[1:] if text.startswith("\ufeff") else text


# ---------------------------------------------------------------- decode

def _as_text(body: bytes | str) -> str:
    if isinstance(body, str):
        return body
    try:
        text = bytes(body).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"request body is not valid UTF-8: {exc}") from None
    return text[1:] if text.startswith("\ufeff") else text


# numpy < 1.24 (the MXNet image pins 1.23) builds an object array with this warning where numpy >= 1.24
# raises ValueError for ragged nested lists; both must give 400.
_RAGGED_WARNING = getattr(getattr(np, "exceptions", np), "VisibleDeprecationWarning")


_RAGGED_WARNS = np.lib.NumpyVersion(np.__version__) < "1.24.0"


def _array(value: Any, what: str) -> np.ndarray:
    try:
        if not _RAGGED_WARNS:
            return np.array(value)
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("error", _RAGGED_WARNING)
            return np.array(value)
    except (ValueError, _RAGGED_WARNING) as exc:  # ragged nested lists
        raise BadRequest(f"{what} does not form a rectangular array: {exc}") from None


def parse_json(text: str) -> Any:
    """orjson when it accepts the text, else the standard library (NaN, huge ints, lone surrogates)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        pass
    return _parse_json_stdlib(text)


_LONG_DIGITS = re.compile(r"[0-9]{19}")


def _lost_big_integer(array: np.ndarray, text: str) -> bool:
    """True when orjson may have turned an integer outside int64/uint64 into a float (it does so silently,
    where the standard library keeps the exact int): the decoded values must equal json.loads' (core §9.1)."""
    kind = array.dtype.kind
    if kind == "f":
        return bool((np.abs(array) >= 2.0 ** 63).any())
    if kind in "OU":
        return _LONG_DIGITS.search(text) is not None
    return False


def _parse_json_stdlib(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadRequest(f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno} (char {exc.pos})") from None
    except RecursionError:
        raise BadRequest("invalid JSON: nesting too deep") from None


def _json_footprint(value: Any) -> int:
    """Bytes np.array(value) allocates for parsed JSON holding strings: numpy makes every element as wide as
    the longest string (32 characters for a number among strings), 4 bytes a character."""
    leaves = width = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
            continue
        leaves += 1
        width = max(width, len(item) if isinstance(item, str) else 32)
    return leaves * width * 4


def decode_json(body: bytes | str) -> np.ndarray:
    text = _as_text(body)
    if not text.strip():
        raise BadRequest("empty request body; application/json needs a JSON document")
    value = parse_json(text)
    if '"' in text:  # only strings make np.array wider than the text
        _check_bound(_json_footprint(value), len(text), "the JSON array of strings")
    array = _array(value, "JSON body")
    if _lost_big_integer(array, text):
        array = _array(_parse_json_stdlib(text), "JSON body")
    return array


def decode_jsonlines(body: bytes | str) -> np.ndarray:
    text = _as_text(body)
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise BadRequest("empty request body; application/jsonlines needs one JSON value per line")
    values = [parse_json(line) for line in lines]
    if '"' in text:
        _check_bound(_json_footprint(values), len(text), "the JSON Lines strings")
    array = _array(values, "JSON Lines body")
    if _lost_big_integer(array, "\n".join(lines)):
        array = _array([_parse_json_stdlib(line) for line in lines], "JSON Lines body")
    return array


def decode_csv(body: bytes | str) -> np.ndarray:
    text = _as_text(body)
    if not text.strip():
        raise BadRequest("empty request body; text/csv needs at least one row")
    lines = text.splitlines()
    # text columns are as wide as their longest field: at most rows x longest line characters, 4 bytes each
    _check_bound(len(lines) * max(map(len, lines)) * 4, len(text), "the CSV text columns")
    import warnings
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.genfromtxt(io.StringIO(text), dtype=None, delimiter=",")
    except ValueError as exc:
        raise BadRequest(f"CSV rows have different numbers of columns: {exc}") from None
    except TypeError as exc:  # numpy's type inference fails on some columns of empty and text fields
        raise BadRequest(f"CSV columns cannot be typed (empty fields beside text?): {exc}") from None


def _read_array_header(stream: io.BytesIO, version: tuple[int, int]) -> tuple:
    """numpy has no public reader for 3.0 headers; its private one moved in numpy 2 (numpy.lib._format_impl)."""
    reader = getattr(np.lib.format, "_read_array_header", None)
    if reader is None:
        from numpy.lib import _format_impl

        reader = _format_impl._read_array_header
    return reader(stream, version)


def _check_npy_header(stream: io.BytesIO, available: int | None = None) -> None:
    """Refuse pickled arrays, and (given how many bytes the NPY data has) a header that declares more data than
    there is: numpy allocates the declared size before it reads, so a 100-byte body could claim gigabytes."""
    start = stream.tell()
    try:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(stream)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(stream)
        else:
            shape, _, dtype = _read_array_header(stream, version)  # 3.0: utf-8 header
    except ValueError as exc:
        raise BadRequest(f"malformed NPY data: {exc}") from None
    if dtype.hasobject:
        raise PickleRejected("pickled (object dtype) NPY data is never accepted; send a numeric array")
    if available is not None:
        declared = math.prod(shape) * dtype.itemsize
        data = available - (stream.tell() - start)
        if declared > data:
            raise BadRequest(f"malformed NPY data: the header declares shape {shape} of {dtype} ({declared:,} bytes) "
                             f"but only {max(data, 0):,} bytes of data follow")
    stream.seek(start)


def decode_npy(body: bytes | str) -> np.ndarray:
    if isinstance(body, str):
        body = body.encode("latin-1")
    stream = io.BytesIO(body)
    _check_npy_header(stream, len(body))
    try:
        return np.load(stream, allow_pickle=False)
    except (ValueError, EOFError, OSError) as exc:
        raise BadRequest(f"malformed or truncated NPY data: {exc}") from None


def decode_npz(body: bytes | str) -> Any:
    if isinstance(body, str):
        body = body.encode("latin-1")
    try:
        archive = zipfile.ZipFile(io.BytesIO(body))
        members = [name[:-4] if name.endswith(".npy") else name for name in archive.namelist()]
        _check_bound(sum(info.file_size for info in archive.infolist()), len(body), "the NPZ members")
        for info in archive.infolist():
            with archive.open(info) as member:
                _check_npy_header(io.BytesIO(member.read(4096)), info.file_size)
    except zipfile.BadZipFile as exc:
        raise BadRequest(f"malformed NPZ data: {exc}") from None
    try:
        if "format" in members and {"data", "shape"} <= set(members):
            try:
                import scipy.sparse
            except ImportError:
                raise UnsupportedMediaType("this NPZ body is a scipy sparse matrix, and scipy is not installed in "
                                           "this image: send the dense arrays, or add scipy to "
                                           "code/requirements.txt") from None
            return scipy.sparse.load_npz(io.BytesIO(body))
        with np.load(io.BytesIO(body), allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except (ValueError, EOFError, OSError, KeyError) as exc:
        raise BadRequest(f"malformed NPZ data: {exc}") from None


DECODERS = {JSON: decode_json, CSV: decode_csv, NPY: decode_npy, NPZ: decode_npz, JSONLINES: decode_jsonlines}


def decode(body: bytes | str, content_type: str | None) -> Any:
    bare, _ = media_type(content_type)
    decoder = DECODERS.get(bare)
    if decoder is None:
        raise UnsupportedFormatError(content_type or "(none)",
                                     f"Content-Type {content_type or '(missing)'} is not supported by the default "
                                     f"input_fn; send one of {', '.join(DECODERS)} or provide input_fn")
    return decoder(body)


# ---------------------------------------------------------------- encode

def _tolist(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _has_nonfinite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, (list, tuple)):
        return any(_has_nonfinite(v) for v in value)
    if isinstance(value, dict):
        return any(_has_nonfinite(v) for v in value.values())
    return False


def encode_json(value: Any) -> bytes:
    """json.dumps(x, default=tolist) semantics: float32 prints as its float64 value, NaN as the bare token."""
    if isinstance(value, np.ndarray) or isinstance(value, np.generic):
        value = value.tolist()
    try:
        text = orjson.dumps(value, default=_tolist)
        if b"null" not in text or not _has_nonfinite(value):
            return text
    except (TypeError, orjson.JSONEncodeError):
        pass  # NaN, big ints or exotic types: the standard library decides
    try:
        return json.dumps(value, default=_tolist, separators=(",", ":")).encode()
    except (TypeError, ValueError) as exc:
        raise EncodeError(f"prediction cannot be encoded as JSON: {exc}") from None


def encode_jsonlines(value: Any) -> bytes:
    if isinstance(value, np.ndarray):
        rows = list(value) if value.ndim else [value]
    elif isinstance(value, (list, tuple)):
        rows = list(value)
    else:
        rows = [value]
    return b"".join(encode_json(row) + b"\n" for row in rows)


def _numeric(value: Any, what: str) -> np.ndarray:
    try:
        array = np.asarray(value)
    except ValueError as exc:
        raise EncodeError(f"prediction cannot be encoded as {what}: {exc}") from None
    if array.dtype.hasobject:
        raise EncodeError(f"prediction of shape {array.shape} holds objects (ragged or mixed data); "
                          f"{what} needs a rectangular array")
    return array


def encode_csv(value: Any) -> bytes:
    array = _numeric(value, "CSV")
    if array.ndim > 2:
        raise EncodeError(f"prediction of shape {array.shape} cannot be written as CSV (at most 2 dimensions)")
    if array.ndim == 0:
        return f"{array[()]}\n".encode()
    out = io.StringIO()
    np.savetxt(out, array, delimiter=",", fmt="%s")
    return out.getvalue().encode()


def encode_npy(value: Any) -> bytes:
    array = _numeric(value, "NPY")
    out = io.BytesIO()
    np.save(out, array, allow_pickle=False)
    return out.getvalue()


ENCODERS = {JSON: encode_json, CSV: encode_csv, NPY: encode_npy, JSONLINES: encode_jsonlines}


def encode(value: Any, content_type: str) -> bytes:
    encoder = ENCODERS.get(media_type(content_type)[0])
    if encoder is None:
        raise UnsupportedFormatError(content_type)
    return encoder(value)


def dense(matrix: Any, body_size: int) -> np.ndarray:
    """A decoded scipy sparse matrix as a dense array, refused when that would exceed the decoded-size bound
    (a 1 KB sparse NPZ can describe a 20000 x 20000 matrix)."""
    _check_bound(math.prod(matrix.shape) * matrix.dtype.itemsize, body_size,
                 f"the sparse {matrix.shape[0]} x {matrix.shape[1]} matrix made dense")
    return np.asarray(matrix.toarray())


def as_float32(array: np.ndarray, framework: str = "") -> np.ndarray:
    """Decoded request data as float32, what AWS's default input handlers make of JSON/CSV (FloatTensor,
    mx.nd.array). Structured CSV rows become plain rows; text or objects are a client error."""
    hint = f"the default {framework + ' ' if framework else ''}input_fn"
    if array.dtype.names:
        fields = [array.dtype.fields[name][0] for name in array.dtype.names]
        if not all(field.kind in "biuf" for field in fields):
            raise BadRequest(f"{hint} needs numeric data; CSV columns hold text: provide input_fn for other data")
        from numpy.lib import recfunctions

        return recfunctions.structured_to_unstructured(array, dtype=np.float32)
    if array.dtype.kind not in "biuf":
        kind = "objects" if array.dtype.kind == "O" else "text"
        raise BadRequest(f"{hint} needs numeric data (numbers or booleans); got {kind}: provide input_fn for other data")
    return array.astype(np.float32, copy=False)

