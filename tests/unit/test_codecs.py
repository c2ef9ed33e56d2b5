"""Pure-function tests of the default codecs (spec core §8, §9) — no server.

The contract tests in tests/contract/test_core_codecs.py check the same rules through HTTP; these pin the
whole rule tables quickly.
"""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest

from smserve import codecs
from smserve.errors import BadRequest, EncodeError, PickleRejected, UnsupportedFormatError, UnsupportedMediaType


# ---------------------------------------------------------------- §8 body delivery

@pytest.mark.parametrize("content_type", ["application/json", "APPLICATION/JSON; charset=utf-8", "text/csv",
                                          "Text/CSV;Charset=UTF-8", "application/json ; charset=\"utf-8\""])
def test_text_types_delivered_as_str(content_type):
    """core §8: application/json and text/csv (parameters and case ignored) reach input_fn as str."""
    assert codecs.body_for_input_fn(b"[1]", content_type) == "[1]"


@pytest.mark.parametrize("content_type", [None, "", "application/x-npy", "application/octet-stream",
                                          "multipart/form-data; boundary=x", "application/x-www-form-urlencoded",
                                          "text/plain", "application/jsonlines"])
def test_other_types_delivered_as_bytes(content_type):
    """core §8: any other media type, or none, gives bytes (form types included: raw bytes)."""
    body = b"a=1&b=2"
    out = codecs.body_for_input_fn(body, content_type)
    assert isinstance(out, bytes) and out == body


def test_latin1_charset_honoured():
    """core §8 / §21 item 26: charset=latin-1 decodes 0xE9 as é."""
    assert codecs.body_for_input_fn(b'["caf\xe9"]', "application/json; charset=latin-1") == '["café"]'


def test_utf8_bom_removed():
    """core §8: a UTF-8 BOM is removed."""
    assert codecs.body_for_input_fn(b"\xef\xbb\xbf[1]", "application/json") == "[1]"


def test_unknown_charset_is_415():
    """core §8 / item 27: unknown charset → 415."""
    with pytest.raises(UnsupportedMediaType):
        codecs.body_for_input_fn(b"[1]", "application/json; charset=bogus")


def test_invalid_bytes_in_charset_is_400():
    """core §8: bytes not valid in the charset → 400."""
    with pytest.raises(BadRequest):
        codecs.body_for_input_fn(b"[\xff\xfe]", "application/json; charset=utf-8")


def test_empty_body_without_type_is_empty_bytes():
    """core §8: no Content-Type → bytes, possibly empty."""
    assert codecs.body_for_input_fn(b"", None) == b""


# ---------------------------------------------------------------- §9.1 JSON decode

@pytest.mark.parametrize("text", ["[1,2,3]", "[1, 2.5]", "[[1,2],[3,4]]", "[true,false]", '["a","bc"]',
                                  '{"a": 1}', "null", "7", "[1.5e300, -0.0]", '[[1,2.0],[3,4]]',
                                  "[9223372036854775808]", "[18446744073709551616]", "[]", '"x"'])
def test_json_decode_equals_numpy_array_of_json_loads(text):
    """core §9.1: result equals numpy.array(json.loads(text)) with no dtype."""
    got = codecs.decode_json(text)
    want = np.array(json.loads(text))
    assert got.dtype == want.dtype and got.shape == want.shape
    if want.dtype != object:
        np.testing.assert_array_equal(got, want)
    else:
        assert got.tolist() == want.tolist()


def test_json_decode_dtypes_pinned():
    """core §9.1 / items 60, 61: the pinned consequences of numpy.array(json.loads(...))."""
    assert codecs.decode_json("[1,2,3]").dtype == np.int64
    assert codecs.decode_json("[1,2,3]").shape == (3,)
    assert codecs.decode_json("[1, 2.5]").dtype == np.float64
    assert codecs.decode_json("[true, false]").dtype == np.bool_
    assert codecs.decode_json('["a", "b"]').dtype.kind == "U"
    obj = codecs.decode_json('{"a": 1}')
    assert obj.dtype == object and obj.shape == () and obj[()] == {"a": 1}
    assert codecs.decode_json("[9223372036854775808]").dtype == np.uint64
    assert codecs.decode_json("[18446744073709551616]").dtype == object
    null = codecs.decode_json("null")
    assert null.dtype == object and null.shape == () and null[()] is None


def test_json_non_standard_tokens_and_duplicate_keys():
    """core §9.1 / item 62: NaN/Infinity/-Infinity accepted; duplicate keys: last wins."""
    arr = codecs.decode_json("[NaN, Infinity, -Infinity]")
    assert arr.dtype == np.float64
    assert math.isnan(arr[0]) and arr[1] == math.inf and arr[2] == -math.inf
    assert codecs.decode_json('{"a": 1, "a": 2}')[()] == {"a": 2}


def test_json_lone_surrogate_falls_back_to_stdlib():
    """core §9.1: the fast parser falls back to the stdlib for lone surrogates; identical result."""
    text = '["\\ud800"]'
    assert codecs.decode_json(text).tolist() == json.loads(text)


@pytest.mark.parametrize("text", ["[[1,2],[3]]", "[[1],[2,[3]]]"])
def test_json_ragged_is_400(text):
    """core §9.1 / item 63: ragged nested lists → 400 BadRequest."""
    with pytest.raises(BadRequest):
        codecs.decode_json(text)


@pytest.mark.parametrize("text", ["[1,2", "{'a': 1}", "", "   ", "[1,]"])
def test_json_invalid_or_empty_is_400(text):
    """core §9.1 / items 64, 69: invalid JSON or empty body → 400."""
    with pytest.raises(BadRequest):
        codecs.decode_json(text)


def test_json_invalid_message_has_offset():
    """core §9.1 / item 64: the message carries the parser message and offset."""
    with pytest.raises(BadRequest) as info:
        codecs.decode_json("[1,2")
    assert "char" in str(info.value) or "column" in str(info.value)


def test_json_bytes_body_accepted():
    """The decoder also accepts bytes (compat shim decode / non-text delivery)."""
    assert codecs.decode_json(b"[1,2]").tolist() == [1, 2]


# ---------------------------------------------------------------- §9.2 CSV decode

# genfromtxt text cells: `<U1` with numpy 2.x, bytes `S1` with numpy 1.23 (the MXNet image), core §9.2
NUMPY_1 = np.lib.NumpyVersion(np.__version__) < "2.0.0"
TEXT_CELL = np.dtype("S1") if NUMPY_1 else np.dtype("<U1")


def _text(value: str):
    return value.encode() if NUMPY_1 else value


CSV_TABLE = [
    ("1,2,3", np.int64, (3,), [1, 2, 3]),
    ("1.0,2.0\n3.0,4.0", np.float64, (2, 2), [[1.0, 2.0], [3.0, 4.0]]),
    ("5", np.int64, (), 5),
    ("1\n2\n3", np.int64, (3,), [1, 2, 3]),
    ("1,,3", np.int64, (3,), [1, 0, 3]),
    ("1,2,3 # note", np.int64, (3,), [1, 2, 3]),
    ("# header\n1,2\n# more\n3,4\n", np.int64, (2, 2), [[1, 2], [3, 4]]),
    ("1,2\n\n3,4\n\n", np.int64, (2, 2), [[1, 2], [3, 4]]),
    ("1,2\r\n3,4\r\n", np.int64, (2, 2), [[1, 2], [3, 4]]),
    (" 1 , 2 ", np.int64, (2,), [1, 2]),
    ("a,b", TEXT_CELL, (2,), [_text("a"), _text("b")]),
    ("true,false", np.bool_, (2,), [True, False]),
    ('"a,b",c', None, (3,), [_text('"a'), _text('b"'), _text("c")]),
]


@pytest.mark.parametrize("text,dtype,shape,values", CSV_TABLE, ids=[repr(r[0]) for r in CSV_TABLE])
def test_csv_quirk_table(text, dtype, shape, values):
    """core §9.2 table (items 65, 66): genfromtxt(dtype=None, delimiter=",") semantics."""
    arr = codecs.decode_csv(text)
    assert arr.shape == shape
    if dtype is not None:
        assert arr.dtype == dtype
    assert arr.tolist() == values


def test_csv_bytes_and_str_agree():
    assert codecs.decode_csv(b"1,2\n3,4").tolist() == codecs.decode_csv("1,2\n3,4").tolist()


def test_csv_mixed_columns_structured():
    """core §9.2 / item 67: `1,2.5,3` → 0-d structured int64/float64/int64; `1,2.5\\n3,4` → (2,) structured."""
    arr = codecs.decode_csv("1,2.5,3")
    assert arr.shape == () and arr.dtype.names is not None
    assert [arr.dtype.fields[n][0] for n in arr.dtype.names] == [np.dtype(np.int64), np.dtype(np.float64),
                                                                   np.dtype(np.int64)]
    assert arr.tolist() == (1, 2.5, 3)
    arr = codecs.decode_csv("1,2.5\n3,4")
    assert arr.shape == (2,) and arr.dtype.names is not None
    assert arr.tolist() == [(1, 2.5), (3, 4.0)]
    arr = codecs.decode_csv("1,a")
    assert arr.dtype.names is not None and arr.tolist() == (1, _text("a"))


@pytest.mark.parametrize("text", ["1,2\n3,4,5", "", "\n\n", "  "])
def test_csv_ragged_or_empty_is_400(text):
    """core §9.2 / items 68, 69: ragged rows → 400; empty body → 400."""
    with pytest.raises(BadRequest):
        codecs.decode_csv(text)


# ---------------------------------------------------------------- §9.3 / §9.4 NPY, NPZ

def _npy(array, version=None) -> bytes:
    out = io.BytesIO()
    if version is None:
        np.save(out, array, allow_pickle=True)
    else:
        np.lib.format.write_array(out, array, version=version, allow_pickle=False)
    return out.getvalue()


@pytest.mark.parametrize("version", [(1, 0), (2, 0), (3, 0)])
@pytest.mark.parametrize("array", [np.arange(6, dtype=np.float32).reshape(2, 3),
                                   np.array([1, 2], dtype=">i2"), np.asfortranarray(np.arange(6.0).reshape(2, 3)),
                                   np.zeros(2, dtype=[("a", "<i4"), ("b", "<f8")]), np.array(True)],
                         ids=["f32", "be-i2", "fortran", "structured", "0d-bool"])
def test_npy_roundtrip_versions(array, version):
    """core §9.3 / item 70: headers 1.0/2.0/3.0, any non-object dtype, Fortran order; dtype and shape kept."""
    got = codecs.decode_npy(_npy(array, version))
    assert got.dtype == array.dtype and got.shape == array.shape
    np.testing.assert_array_equal(got, array)


class _Boom:
    def __reduce__(self):
        return (exec, ("import pathlib; pathlib.Path('/tmp/smserve-pwned').write_text('x')",))


def test_npy_pickle_rejected_and_not_executed(tmp_path):
    """core §9.3 / item 71: object-dtype NPY → PickleRejected; nothing in it runs."""
    import os
    marker = "/tmp/smserve-pwned"
    if os.path.exists(marker):
        os.unlink(marker)
    body = _npy(np.array([_Boom(), 1], dtype=object))
    with pytest.raises(PickleRejected):
        codecs.decode_npy(body)
    assert not os.path.exists(marker)


@pytest.mark.parametrize("body", [b"", b"\x93NUMPY", _npy(np.arange(100.0))[:-8], b"not numpy at all"])
def test_npy_malformed_is_400(body):
    """core §9.3: truncated or malformed data → 400."""
    with pytest.raises(BadRequest):
        codecs.decode_npy(body)


def test_npz_savez_is_dict():
    """core §9.4 / item 72: numpy.savez archive → dict name → ndarray."""
    out = io.BytesIO()
    np.savez(out, x=np.arange(3), y=np.ones((2, 2), dtype=np.float32))
    got = codecs.decode_npz(out.getvalue())
    assert isinstance(got, dict) and set(got) == {"x", "y"}
    assert got["y"].dtype == np.float32 and got["x"].tolist() == [0, 1, 2]


def test_npz_scipy_sparse():
    """core §9.4 / item 72: scipy.sparse.save_npz archive → the sparse matrix."""
    scipy = pytest.importorskip("scipy", reason="scipy is not in this family's image (TensorFlow)")
    import scipy.sparse
    matrix = scipy.sparse.csr_matrix(np.array([[0, 1.5], [2, 0]]))
    out = io.BytesIO()
    scipy.sparse.save_npz(out, matrix)
    got = codecs.decode_npz(out.getvalue())
    assert scipy.sparse.issparse(got)
    np.testing.assert_array_equal(got.toarray(), matrix.toarray())


def test_npz_sparse_without_scipy_is_415_naming_scipy(monkeypatch):
    """An image without scipy (TensorFlow) answers a sparse NPZ with a clear 415, not a 500."""
    out = io.BytesIO()
    np.savez(out, format=np.array("csr"), data=np.ones(2), indices=np.arange(2), indptr=np.arange(3),
             shape=np.array([2, 2]))
    monkeypatch.setitem(__import__("sys").modules, "scipy", None)
    monkeypatch.setitem(__import__("sys").modules, "scipy.sparse", None)
    with pytest.raises(UnsupportedMediaType, match="scipy is not installed"):
        codecs.decode_npz(out.getvalue())


def test_npz_object_member_rejected():
    """core §9.4: object members → 400 PickleRejected."""
    out = io.BytesIO()
    np.savez(out, x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(PickleRejected):
        codecs.decode_npz(out.getvalue())


def test_npz_malformed_is_400():
    with pytest.raises(BadRequest):
        codecs.decode_npz(b"PK not a zip")


# ---------------------------------------------------------------- §9.5 JSON Lines decode

def test_jsonlines_decode():
    """core §9.5: non-blank lines, numpy.array([v1, v2, ...])."""
    arr = codecs.decode_jsonlines("[1,2]\n\n[3,4]\n")
    assert arr.dtype == np.int64 and arr.tolist() == [[1, 2], [3, 4]]
    with pytest.raises(BadRequest):
        codecs.decode_jsonlines("\n \n")
    with pytest.raises(BadRequest):
        codecs.decode_jsonlines("[1,2]\n[3]")


def test_decode_dispatch_and_unknown_type():
    """core §9: dispatch on media type, parameters and case ignored, jsonlines alias; unknown → UnsupportedFormatError."""
    assert codecs.decode("[1]", "Application/JSON; charset=utf-8").tolist() == [1]
    assert codecs.decode("[1]\n[2]", "application/x-jsonlines").tolist() == [[1], [2]]
    with pytest.raises(UnsupportedFormatError):
        codecs.decode(b"x", "text/plain")
    with pytest.raises(UnsupportedFormatError):
        codecs.decode(b"x", None)


# ---------------------------------------------------------------- §9.6 JSON encode

def test_json_encode_float32_as_float64_value():
    """core §9.6 / item 73: float32 0.1 is written as 0.10000000149011612."""
    assert codecs.encode_json(np.array([0.1], dtype=np.float32)) in (b"[0.10000000149011612]",)
    assert json.loads(codecs.encode_json({"v": np.float32(0.1)}))["v"] == 0.10000000149011612
    assert "0.10000000149011612" in codecs.encode_json([np.float32(0.1)]).decode()


def test_json_encode_nonfinite_tokens():
    """core §9.6 / item 74: NaN, Infinity, -Infinity as bare tokens."""
    text = codecs.encode_json(np.array([np.nan, np.inf, -np.inf])).decode()
    assert text.replace(" ", "") == "[NaN,Infinity,-Infinity]"
    text = codecs.encode_json({"a": [float("nan")]}).decode()
    assert "NaN" in text and "null" not in text


@pytest.mark.parametrize("value", [
    np.arange(6, dtype=np.int32).reshape(2, 3), np.float64(2.5), {"a": np.array([1, 2]), "b": (1, 2)},
    [np.int64(3), np.bool_(True), None, "s"], np.array(7), np.array([2**63], dtype=np.uint64),
    np.array([1e-7, 1e20]), [{"x": np.float32(1.5)}],
])
def test_json_encode_matches_dumps_default_tolist(value):
    """core §9.6: semantics of json.dumps(x, default=tolist); compared as parsed JSON."""
    def tolist(x):
        return x.tolist()
    want = json.loads(json.dumps(value.tolist() if isinstance(value, (np.ndarray, np.generic)) else value,
                                 default=tolist))
    assert json.loads(codecs.encode_json(value)) == want


def test_json_encode_object_with_tolist():
    """core §9.6: any object with tolist() becomes its list."""
    class T:
        def tolist(self):
            return [1, 2]
    assert json.loads(codecs.encode_json({"t": T()})) == {"t": [1, 2]}


def test_json_encode_unencodable_is_encode_error():
    with pytest.raises(EncodeError):
        codecs.encode_json({"x": object()})


# ---------------------------------------------------------------- §9.7 CSV encode

@pytest.mark.parametrize("value,expected", [
    ([1, 2, 3], b"1\n2\n3\n"),
    ([[1, 2], [3, 4]], b"1,2\n3,4\n"),
    (np.array([1e-7, 1e20, np.nan, np.inf]), b"1e-07\n1e+20\nnan\ninf\n"),
    (np.array([[True, False]]), b"True,False\n"),
    (np.array(["a", "b,c"]), b"a\nb,c\n"),
    (np.array(5), b"5\n"),
    (np.float64(2.5), b"2.5\n"),
    (np.array([[0.5, 1.0]], dtype=np.float32), b"0.5,1.0\n"),
], ids=["1d", "2d", "floats", "bool", "strings-unquoted", "0d", "scalar", "f32"])
def test_csv_encode(value, expected):
    """core §9.7 / item 75: savetxt(delimiter=",", fmt="%s"); 1-D one value per line; 0-d one line."""
    assert codecs.encode_csv(value) == expected


@pytest.mark.parametrize("value", [np.zeros((2, 2, 2)), [[1, 2], [3]], np.array([{"a": 1}], dtype=object)],
                         ids=["3d", "ragged", "object"])
def test_csv_encode_refuses(value):
    """core §9.7 / item 76: 3-D and higher, ragged or object data → EncodeError naming the shape."""
    with pytest.raises(EncodeError) as info:
        codecs.encode_csv(value)
    if isinstance(value, np.ndarray) and value.ndim == 3:
        assert "(2, 2, 2)" in str(info.value)


# ---------------------------------------------------------------- §9.8 NPY encode

@pytest.mark.parametrize("array", [np.arange(6, dtype=np.float32).reshape(2, 3), np.array([1, 2], dtype=np.int8),
                                   np.array(3.5), np.array([True])])
def test_npy_encode_roundtrip_no_pickle(array):
    """core §9.8 / item 77: numpy.save of asarray(x), allow_pickle=False, version 1.0; dtype kept."""
    body = codecs.encode_npy(array)
    assert body[6:8] == b"\x01\x00"
    got = np.load(io.BytesIO(body), allow_pickle=False)
    assert got.dtype == array.dtype and got.shape == array.shape
    np.testing.assert_array_equal(got, array)


@pytest.mark.parametrize("value", [[[1, 2], [3]], {"a": 1}, np.array([None, 1], dtype=object)])
def test_npy_encode_object_refused(value):
    """core §9.8 / item 77: object arrays (ragged, dicts) → EncodeError, never a pickle."""
    with pytest.raises(EncodeError):
        codecs.encode_npy(value)


# ---------------------------------------------------------------- §9.9 JSON Lines encode

def test_jsonlines_encode():
    """core §9.9: one JSON value per first-axis element, '\\n' after each."""
    assert codecs.encode_jsonlines(np.array([[1, 2], [3, 4]])) == b"[1,2]\n[3,4]\n"
    assert [json.loads(x) for x in codecs.encode_jsonlines([{"a": 1}, 2]).splitlines()] == [{"a": 1}, 2]


def test_encode_dispatch():
    assert codecs.encode([1], "application/json") == b"[1]"
    assert codecs.encode([1], "text/csv") == b"1\n"
    with pytest.raises(UnsupportedFormatError):
        codecs.encode([1], "image/png")


def test_media_type_parsing():
    """core §3: media type matched ignoring parameters and case; aliases resolved."""
    assert codecs.media_type("Application/JSON; Charset=\"latin-1\"") == ("application/json", {"charset": "latin-1"})
    assert codecs.media_type("application/x-jsonlines")[0] == "application/jsonlines"
    assert codecs.media_type(None) == ("", {})
