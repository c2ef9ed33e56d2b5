"""core.md §3/§8 body delivery, §9 default codecs and §10 Accept negotiation, through real HTTP.

Three servers for the whole module:
- `probe`: a user input_fn that decodes with the default decoder and reports what it got (type, dtype, shape,
  values), so the §9 decode rules are seen as user code sees them;
- `echo`: an Echo model with the family's default input_fn and output_fn (the real default path; PyTorch:
  TorchScript, MXNet: an exported Gluon block served as a SymbolBlock, core_scripts.echo_dir);
  its predict_fn returns canned values (X-Result header) to exercise the default encoders;
- `echo_csv`: the same with SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT=text/csv.
Every bad request is followed by a good one on the same server ("next request succeeds").
"""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest

from ..harness import FAMILY
from .core_scripts import GOOD, ONE_WORKER, echo_dir, error, still_serves



@pytest.fixture(scope="module")
def echo_csv(module_servers, tmp_path_factory):
    return module_servers(echo_dir(tmp_path_factory.mktemp("echo-csv")),
                          {**ONE_WORKER, "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "text/csv"})


def decoded(server, body, content_type, **kwargs) -> dict:
    response = server.post(data=body, content_type=content_type, **kwargs)
    assert response.status_code == 200, response.text
    return response.json()["decoded"]


def raw(server, body, content_type) -> dict:
    response = server.post(data=body, content_type=content_type, headers={"X-Probe": "raw"})
    assert response.status_code == 200, response.text
    return response.json()


def npy(array, **kwargs) -> bytes:
    out = io.BytesIO()
    np.save(out, array, **kwargs)
    return out.getvalue()


# ---------------------------------------------------------------- §3 / §8 Content-Type and body delivery

def test_core_25_uppercase_content_type_with_charset(echo, probe):
    """core §21 item 25: `Content-Type: APPLICATION/JSON; charset=utf-8` is decoded by the default JSON decoder."""
    response = echo.post(data=json.dumps([[1, 2], [3, 4]]), content_type="APPLICATION/JSON; charset=utf-8",
                         accept="application/json")
    assert response.status_code == 200, response.text
    assert response.json() == [[1.0, 2.0], [3.0, 4.0]]
    got = decoded(probe, "[1, 2, 3]", "APPLICATION/JSON; charset=utf-8")
    assert got["dtype"] == "int64" and got["value"] == [1, 2, 3]
    # header name in any case too (AWS's regex misses CONTENT-TYPE)
    response = echo.request("POST", "/invocations", data=b"[[5, 6]]",
                            headers={"CONTENT-TYPE": "application/json", "Accept": "application/json"})
    assert response.status_code == 200 and response.json() == [[5.0, 6.0]]


def test_core_26_latin1_charset(probe):
    """core §21 item 26: `application/json; charset=latin-1` body with byte 0xE9 decodes as "é"."""
    body = b'["caf\xe9", "\xe9"]'
    got = decoded(probe, body, "application/json; charset=latin-1")
    assert got["value"] == ["café", "é"] and got["dtype"].startswith("<U")
    seen = raw(probe, body, "application/json; charset=latin-1")
    assert seen["body_type"] == "str" and seen["body"] == '["café", "é"]'


def test_core_26b_invalid_utf8_is_400(echo):
    """core §8: bytes not valid in the charset → 400 (AWS 500)."""
    error(echo.post(data=b"[[1, 2\xff]]", content_type="application/json"), 400)
    still_serves(echo)


def test_core_27_unknown_charset_415(echo, probe):
    """core §21 item 27: `application/json; charset=bogus` → 415."""
    error(echo.post(data=GOOD, content_type="application/json; charset=bogus"), 415, "UnsupportedMediaType")
    still_serves(echo)
    error(probe.post(data=b"[1]", content_type="text/csv; charset=bogus", headers={"X-Probe": "raw"}), 415)


def test_core_28_input_fn_str_for_csv_bytes_for_npy(probe):
    """core §21 item 28: user input_fn receives str for text/csv and bytes for application/x-npy."""
    seen = raw(probe, "1,2\n3,4\n", "text/csv")
    assert seen["body_type"] == "str" and seen["body"] == "1,2\n3,4\n" and seen["content_type"] == "text/csv"
    body = npy(np.arange(3, dtype=np.int16))
    seen = raw(probe, body, "application/x-npy")
    assert seen["body_type"] == "bytes" and seen["body"].encode("latin-1") == body
    # the raw header value is what the hook receives as content_type
    seen = raw(probe, "[1]", "Application/JSON;  charset=UTF-8")
    assert seen["body_type"] == "str" and seen["content_type"] == "Application/JSON;  charset=UTF-8"
    # other types, form types included, arrive as the raw bytes (AWS parses form fields and passes None)
    for content_type in ("application/octet-stream", "multipart/form-data; boundary=x",
                         "application/x-www-form-urlencoded"):
        seen = raw(probe, b"a=1&b=%E9", content_type)
        assert seen["body_type"] == "bytes" and seen["body"] == "a=1&b=%E9", content_type


def test_core_29_missing_content_type_is_none(probe):
    """core §21 item 29: user input_fn receives None as content type when the header is missing."""
    seen = raw(probe, b"\x00\x01abc", None)
    assert seen["content_type"] is None and seen["body_type"] == "bytes" and seen["body"] == "\x00\x01abc"
    seen = raw(probe, b"", None)
    assert seen["content_type"] is None and seen["body_type"] == "bytes" and seen["body"] == ""


# ---------------------------------------------------------------- §9.1 JSON decode

def test_core_60_json_int_and_float(probe, echo):
    """core §21 item 60: JSON `[1,2,3]` decodes to int64 (3,); `[1, 2.5]` to float64."""
    got = decoded(probe, "[1,2,3]", "application/json")
    assert (got["dtype"], got["shape"], got["value"]) == ("int64", [3], [1, 2, 3])
    got = decoded(probe, "[1, 2.5]", "application/json")
    assert (got["dtype"], got["shape"], got["value"]) == ("float64", [2], [1.0, 2.5])
    got = decoded(probe, "[true, false]", "application/json")
    assert got["dtype"] == "bool"
    got = decoded(probe, "[9223372036854775808]", "application/json")
    assert got["dtype"] == "uint64" and got["value"] == [2**63]
    got = decoded(probe, "[18446744073709551616]", "application/json")
    assert got["dtype"] == "object" and got["value"] == "[18446744073709551616]"
    # through the PyTorch default path the values arrive intact (as float32, pytorch.md)
    response = echo.post(data="[[1, 2, 3]]", accept="application/json")
    assert response.status_code == 200 and response.json() == [[1.0, 2.0, 3.0]]


def test_core_61_json_object_is_0d_object_array(probe):
    """core §21 item 61: JSON `{"a": 1}` decodes to a 0-d object array holding the dict."""
    got = decoded(probe, '{"a": 1}', "application/json")
    assert got["dtype"] == "object" and got["shape"] == [] and got["value"] == "{'a': 1}"
    got = decoded(probe, '{"a": 1, "a": 2}', "application/json")  # duplicate keys: last wins
    assert got["value"] == "{'a': 2}"
    got = decoded(probe, "null", "application/json")
    assert got["dtype"] == "object" and got["shape"] == [] and got["value"] == "None"


def test_core_62_json_nan_infinity(probe):
    """core §21 item 62: JSON `[NaN, Infinity]` decodes to float64 nan, inf."""
    got = decoded(probe, "[NaN, Infinity, -Infinity]", "application/json")
    assert got["dtype"] == "float64" and got["shape"] == [3]
    assert math.isnan(got["value"][0]) and got["value"][1:] == [math.inf, -math.inf]


def test_core_63_json_ragged_400(echo, probe):
    """core §21 item 63: JSON `[[1,2],[3]]` → 400."""
    error(echo.post(data="[[1,2],[3]]", content_type="application/json"), 400, "BadRequest")
    still_serves(echo)
    error(probe.post(data="[[1,2],[3]]", content_type="application/json"), 400, "BadRequest")


def test_core_64_invalid_json_400_with_parser_message(echo):
    """core §21 item 64: invalid JSON → 400 with the parser message (and its offset)."""
    body = error(echo.post(data="[[1, 2", content_type="application/json"), 400, "BadRequest")
    assert "json" in body["message"].lower()
    assert any(word in body["message"] for word in ("char", "column", "offset", "line"))
    assert "Traceback" not in body["message"]
    still_serves(echo)


# ---------------------------------------------------------------- §9.2 CSV decode

def test_core_65_csv_shapes(probe, echo):
    """core §21 item 65: CSV `1,2,3` decodes to shape (3,); `1,2\\n3,4` to (2, 2)."""
    got = decoded(probe, "1,2,3", "text/csv")
    assert (got["dtype"], got["shape"], got["value"]) == ("int64", [3], [1, 2, 3])
    got = decoded(probe, "1,2\n3,4", "text/csv")
    assert (got["dtype"], got["shape"], got["value"]) == ("int64", [2, 2], [[1, 2], [3, 4]])
    got = decoded(probe, "# comment\r\n1.5, 2.5 # note\r\n\r\n3,4\r\n", "text/csv")  # quirk rows of §9.2
    assert (got["dtype"], got["shape"], got["value"]) == ("float64", [2, 2], [[1.5, 2.5], [3.0, 4.0]])
    got = decoded(probe, "1,,3", "text/csv")
    assert got["value"] == [1, 0, 3]
    response = echo.post(data="1,2\n3,4\n", content_type="text/csv", accept="application/json")
    assert response.status_code == 200 and response.json() == [[1.0, 2.0], [3.0, 4.0]]


def test_core_66_csv_single_value_0d(probe):
    """core §21 item 66: CSV `5` decodes to a 0-d array."""
    got = decoded(probe, "5", "text/csv")
    assert (got["dtype"], got["shape"], got["value"]) == ("int64", [], 5)


def test_core_67_csv_mixed_columns_structured(probe, echo):
    """core §21 item 67: CSV `1,2.5,3` decodes to a structured 0-d array (columns typed separately)."""
    got = decoded(probe, "1,2.5,3", "text/csv")
    assert got["shape"] == [] and got["fields"] == ["int64", "float64", "int64"] and got["value"] == [1, 2.5, 3]
    got = decoded(probe, "1,2.5\n3,4", "text/csv")
    assert got["shape"] == [2] and got["fields"] == ["int64", "float64"]
    # the PyTorch default turns structured rows into plain float rows (pytorch.md)
    response = echo.post(data="1,2.5\n3,4", content_type="text/csv", accept="application/json")
    assert response.status_code == 200 and response.json() == [[1.0, 2.5], [3.0, 4.0]]


def test_core_68_csv_ragged_400(echo):
    """core §21 item 68: CSV `1,2\\n3,4,5` → 400."""
    error(echo.post(data="1,2\n3,4,5", content_type="text/csv"), 400, "BadRequest")
    still_serves(echo)


@pytest.mark.parametrize("content_type", ["application/json", "text/csv", "application/json; charset=utf-8"])
def test_core_69_empty_body_400(echo, content_type):
    """core §21 item 69: empty body with a JSON or CSV content type to a default decoder → 400."""
    error(echo.post(data=b"", content_type=content_type), 400, "BadRequest")
    still_serves(echo)


# ---------------------------------------------------------------- §9.3 / §9.4 NPY, NPZ

@pytest.mark.parametrize("array", [np.arange(6, dtype=np.float32).reshape(2, 3), np.array([1, -2, 3], dtype=np.int16),
                                   np.asfortranarray(np.arange(6, dtype=np.float64).reshape(3, 2)),
                                   np.array([1, 2], dtype=">i4")],
                         ids=["f32", "i16", "fortran-f64", "big-endian"])
def test_core_70_npy_dtype_shape_preserved(probe, array):
    """core §21 item 70: a valid numeric NPY decodes with dtype and shape preserved."""
    got = decoded(probe, npy(array), "application/x-npy")
    assert np.dtype(got["dtype"]) == array.dtype and got["shape"] == list(array.shape)
    assert got["value"] == array.tolist()


# What the family's default input_fn makes of an int64 NPY (the Echo model returns it as it arrived, and NPY
# output keeps the dtype): PyTorch keeps int64 (pytorch.md §11 item 15); MXNet makes every input a float32
# NDArray whatever the source dtype (mxnet.md §4.1, §5).
NPY_INT64_ARRIVES_AS = {"pytorch": np.int64, "mxnet": np.float32}


def test_core_70b_npy_default_path_keeps_ints(echo):
    """core §9.3 + family defaults: an int64 NPY reaches the model with the family's dtype (PyTorch: int64;
    MXNet: float32) and comes back as NPY of that dtype, values intact."""
    array = np.array([[1, 2], [3, 4]], dtype=np.int64)
    response = echo.post(data=npy(array), content_type="application/x-npy", accept="application/x-npy")
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "application/x-npy"
    got = np.load(io.BytesIO(response.content), allow_pickle=False)
    assert got.dtype == NPY_INT64_ARRIVES_AS[FAMILY] and got.tolist() == array.tolist()


class _Exploit:
    """Unpickling runs code that leaves a mark the test can see on either target: a file on the host, and the
    end of the process that unpickled it (the request would never get its 400, in a container too)."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (exec, (f"import os, pathlib; pathlib.Path({str(self.path)!r}).touch(); os._exit(17)",))


def test_core_71_pickled_npy_rejected(echo, probe, tmp_path):
    """core §21 item 71: an object-dtype (pickled) NPY → 400 PickleRejected; no code in it runs (had it run, the
    worker would have exited before answering)."""
    marker = tmp_path / "pwned"
    body = npy(np.array([_Exploit(marker), 1], dtype=object), allow_pickle=True)
    for server in (echo, probe):
        result = error(server.post(data=body, content_type="application/x-npy"), 400, "PickleRejected")
        assert "pickle" in result["message"].lower()
    assert not marker.exists()
    still_serves(echo)
    # malformed / truncated NPY → 400 too
    error(echo.post(data=npy(np.arange(10.0))[:-5], content_type="application/x-npy"), 400)
    still_serves(echo)


def test_core_72_npz_sparse_and_dict(probe):
    """core §21 item 72: a scipy sparse NPZ decodes to a sparse matrix; a `numpy.savez` NPZ to a dict."""
    import scipy.sparse

    matrix = scipy.sparse.csr_matrix(np.array([[0.0, 1.5, 0.0], [2.0, 0.0, 0.0]]))
    out = io.BytesIO()
    scipy.sparse.save_npz(out, matrix)
    got = decoded(probe, out.getvalue(), "application/x-npz")
    assert got["kind"] == "sparse" and got["shape"] == [2, 3] and got["value"] == matrix.toarray().tolist()
    out = io.BytesIO()
    np.savez(out, x=np.arange(3, dtype=np.int32), y=np.ones((2, 2), dtype=np.float32))
    got = decoded(probe, out.getvalue(), "application/x-npz")
    assert got["kind"] == "dict" and set(got["items"]) == {"x", "y"}
    assert got["items"]["x"]["dtype"] == "int32" and got["items"]["x"]["value"] == [0, 1, 2]
    assert got["items"]["y"]["dtype"] == "float32" and got["items"]["y"]["shape"] == [2, 2]
    out = io.BytesIO()
    np.savez(out, x=np.array([{"a": 1}], dtype=object), allow_pickle=True)
    error(probe.post(data=out.getvalue(), content_type="application/x-npz"), 400, "PickleRejected")


def test_core_jsonlines_decode(probe):
    """core §9.5: application/jsonlines (and the x- alias) decode line by line with the §9.1 rules."""
    for content_type in ("application/jsonlines", "application/x-jsonlines"):
        got = decoded(probe, "[1, 2]\n\n[3, 4]\n", content_type)
        assert (got["dtype"], got["shape"], got["value"]) == ("int64", [2, 2], [[1, 2], [3, 4]])


# ---------------------------------------------------------------- §9.6–§9.9 encode (default output_fn)

def canned(server, name, accept, **kwargs):
    return server.post(data=GOOD, content_type="application/json", accept=accept, headers={"X-Result": name},
                       **kwargs)


def test_core_73_json_float32_as_float64_text(echo):
    """core §21 item 73: JSON encode of float32 0.1 yields `0.10000000149011612`."""
    for name in ("f32", "f32-tensor"):
        response = canned(echo, name, "application/json")
        assert response.status_code == 200, response.text
        assert "0.10000000149011612" in response.text and json.loads(response.text) == [0.10000000149011612]
    response = echo.post(data="[0.1]", accept="application/json")  # float32 model input, echoed
    assert "0.10000000149011612" in response.text


def test_core_74_json_nan_token(echo):
    """core §21 item 74: JSON encode of NaN yields the token `NaN` (and Infinity, -Infinity)."""
    response = canned(echo, "nonfinite", "application/json")
    assert response.status_code == 200, response.text
    assert response.text.replace(" ", "") == "[NaN,Infinity,-Infinity]"
    response = echo.post(data="[NaN, 1]", accept="application/json")
    assert response.status_code == 200 and response.text.replace(" ", "") == "[NaN,1.0]"


def test_core_75_csv_encode(echo):
    """core §21 item 75: CSV encode of `[1,2,3]` yields `1\\n2\\n3\\n`; of `[[1,2],[3,4]]` yields `1,2\\n3,4\\n`."""
    response = canned(echo, "int1d", "text/csv")
    assert response.status_code == 200 and response.content == b"1\n2\n3\n"
    assert response.headers["Content-Type"] == "text/csv"
    response = canned(echo, "int2d", "text/csv")
    assert response.status_code == 200 and response.content == b"1,2\n3,4\n"
    response = canned(echo, "nonfinite", "text/csv")
    assert response.content == b"nan\ninf\n-inf\n"


def test_core_76_csv_3d_encode_error(echo):
    """core §21 item 76: CSV encode of a 3-D array → 500 `EncodeError` naming the shape."""
    body = error(canned(echo, "3d", "text/csv"), 500, "EncodeError")
    assert "(2, 2, 2)" in body["message"]
    still_serves(echo)
    error(canned(echo, "ragged", "text/csv"), 500, "EncodeError")
    still_serves(echo)


@pytest.mark.parametrize("name", ["ragged", "dict", "object-array"])
def test_core_77_npy_never_pickled(echo, name):
    """core §21 item 77: NPY encode never produces a pickled array; an object result → 500 EncodeError."""
    error(canned(echo, name, "application/x-npy"), 500, "EncodeError")
    still_serves(echo)


def test_core_77b_npy_encode_plain(echo):
    """core §9.8: numeric results are written as NPY loadable with allow_pickle=False."""
    response = canned(echo, "int2d", "application/x-npy")
    assert response.status_code == 200
    got = np.load(io.BytesIO(response.content), allow_pickle=False)
    assert got.tolist() == [[1, 2], [3, 4]]


def test_core_jsonlines_encode(echo):
    """core §9.9: one JSON value per first-axis element, newline after each."""
    response = canned(echo, "int2d", "application/jsonlines")
    assert response.status_code == 200 and response.content == b"[1,2]\n[3,4]\n"
    assert response.headers["Content-Type"] == "application/jsonlines"


# ---------------------------------------------------------------- §10 Accept negotiation

def test_core_78_default_accept(echo, echo_csv, probe):
    """core §21 item 78: without Accept, SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT is used; text/csv gives CSV back."""
    no_accept = {"Accept": None}  # requests would otherwise send Accept: */*
    response = echo.post(data=GOOD, headers=no_accept)
    assert response.status_code == 200 and response.headers["Content-Type"] == "application/json"
    assert response.json() == [[1.0, 2.0]]
    response = echo_csv.post(data=GOOD, headers=no_accept)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "text/csv" and response.content == b"1.0,2.0\n"
    response = echo_csv.post(data=GOOD, headers={"Accept": ""})
    assert response.headers["Content-Type"] == "text/csv"
    # user hooks receive the default when Accept is missing, the raw value otherwise
    response = probe.post(data="[1]", headers={"Accept": None, "X-Probe": "raw"})
    assert response.json()["accept"] == "application/json"
    response = probe.post(data="[1]", headers={"Accept": "text/csv;q=0.5, image/png", "X-Probe": "raw"})
    assert response.json()["accept"] == "text/csv;q=0.5, image/png"


def test_core_79_wildcard_q_like_missing(echo_csv, echo):
    """core §21 item 79: Accept `*/*;q=0.8` behaves like a missing Accept."""
    response = echo_csv.post(data=GOOD, accept="*/*;q=0.8")
    assert response.status_code == 200 and response.headers["Content-Type"] == "text/csv"
    assert response.content == b"1.0,2.0\n"
    response = echo_csv.post(data=GOOD, accept="*/*")
    assert response.headers["Content-Type"] == "text/csv"
    response = echo.post(data=GOOD, accept="*/*;q=0.8")
    assert response.headers["Content-Type"] == "application/json"


def test_core_80_first_listed_wins(echo):
    """core §21 item 80: Accept `text/csv, application/json` → CSV."""
    response = echo.post(data=GOOD, accept="text/csv, application/json")
    assert response.status_code == 200 and response.headers["Content-Type"] == "text/csv"
    assert response.content == b"1.0,2.0\n"
    response = echo.post(data=GOOD, accept="application/json, text/csv")
    assert response.headers["Content-Type"] == "application/json"


def test_core_81_q_values(echo):
    """core §21 item 81: Accept `application/json;q=0.5, text/csv;q=0.9` → CSV."""
    response = echo.post(data=GOOD, accept="application/json;q=0.5, text/csv;q=0.9")
    assert response.status_code == 200 and response.headers["Content-Type"] == "text/csv"
    assert response.content == b"1.0,2.0\n"
    response = echo.post(data=GOOD, accept="application/json;q=0.9")  # AWS 500s on a q parameter
    assert response.status_code == 200 and response.json() == [[1.0, 2.0]]


def test_core_82_skip_unsupported(echo):
    """core §21 item 82: Accept `image/png, application/x-npy` → NPY."""
    response = echo.post(data=GOOD, accept="image/png, application/x-npy")
    assert response.status_code == 200 and response.headers["Content-Type"] == "application/x-npy"
    got = np.load(io.BytesIO(response.content), allow_pickle=False)
    assert got.dtype == np.float32 and got.tolist() == [[1.0, 2.0]]


def test_core_83_not_acceptable_406(echo):
    """core §21 item 83: Accept `image/png` only → 406 listing the supported types."""
    body = error(echo.post(data=GOOD, accept="image/png"), 406, "NotAcceptable")
    for media in ("application/json", "text/csv", "application/x-npy"):
        assert media in body["message"]
    still_serves(echo)
    error(echo.post(data=GOOD, accept="application/json;q=0, text/csv;q=0"), 406, "NotAcceptable")
    still_serves(echo)


def test_core_84_bare_content_type(echo):
    """core §21 item 84: the response Content-Type is the bare chosen type, not the raw Accept string."""
    for accept, expected in [("text/csv;q=0.9, application/json;q=0.1", "text/csv"),
                             ("application/json; charset=utf-8", "application/json"),
                             ("TEXT/CSV", "text/csv"),
                             ("application/*", "application/json"),
                             ("application/x-jsonlines", "application/jsonlines")]:
        response = echo.post(data=GOOD, accept=accept)
        assert response.status_code == 200, (accept, response.text)
        assert response.headers["Content-Type"] == expected, accept


@pytest.mark.parametrize("content_type", ["text/plain", "image/png", "application/octet-stream", None])
def test_core_85_unsupported_request_type_415(echo, content_type):
    """core §21 item 85: unsupported request type with the default input_fn → 415."""
    body = error(echo.post(data=b"[[1, 2]]", content_type=content_type), 415, "UnsupportedMediaType")
    assert "application/json" in body["message"]
    still_serves(echo)
