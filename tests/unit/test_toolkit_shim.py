"""core §7.7: the `sagemaker_inference` compatibility package. Expected values are what AWS's
sagemaker-inference 1.10.1 toolkit returns for the same calls (checked against it); where the toolkit would
unpickle or pickle, smserve refuses instead."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from sagemaker_inference import content_types, decoder, default_inference_handler, encoder, errors, utils
from smserve.errors import EncodeError, PickleRejected, classify


def test_core_7_7_content_types():
    assert (content_types.JSON, content_types.CSV, content_types.NPY, content_types.NPZ) == (
        "application/json", "text/csv", "application/x-npy", "application/x-npz")
    assert (content_types.OCTET_STREAM, content_types.ANY) == ("application/octet-stream", "*/*")
    assert content_types.UTF8_TYPES == ["application/json", "text/csv"]


@pytest.mark.parametrize("body", [b"[[1, 2], [3, 4]]", "[[1, 2], [3, 4]]"])
def test_core_7_7_decode_json(body):
    array = decoder.decode(body, content_types.JSON)
    assert array.tolist() == [[1, 2], [3, 4]] and array.dtype.kind == "i"
    assert decoder.decode(b'{"a": 1}', content_types.JSON)[()] == {"a": 1}  # a 0-d object array, as np.array gives


def test_core_7_7_decode_csv_keeps_column_types():
    assert decoder.decode("1,2\n3,4", content_types.CSV).tolist() == [[1, 2], [3, 4]]
    mixed = decoder.decode("1,a\n2,b", content_types.CSV)
    assert mixed.dtype.names == ("f0", "f1") and mixed.dtype["f1"].kind in "SU"  # bytes under numpy 1.23, as there
    assert [(n, t.decode() if isinstance(t, bytes) else t) for n, t in mixed.tolist()] == [(1, "a"), (2, "b")]


def test_core_7_7_decode_npy_and_sparse_npz():
    buffer = io.BytesIO()
    np.save(buffer, np.arange(4.0).reshape(2, 2))
    assert decoder.decode(buffer.getvalue(), content_types.NPY).tolist() == [[0.0, 1.0], [2.0, 3.0]]
    sparse = pytest.importorskip("scipy.sparse", reason="scipy is not in this family's image (TensorFlow)")
    buffer = io.BytesIO()
    sparse.save_npz(buffer, sparse.csr_matrix(np.eye(2)))
    matrix = decoder.decode(buffer.getvalue(), content_types.NPZ)
    assert sparse.issparse(matrix) and matrix.toarray().tolist() == [[1.0, 0.0], [0.0, 1.0]]


def test_core_7_7_decode_json_lines_beyond_the_toolkit():
    for content_type in ("application/jsonlines", "application/x-jsonlines"):
        assert decoder.decode("[1, 2]\n[3, 4]\n", content_type).tolist() == [[1, 2], [3, 4]]


def test_core_7_7_decode_never_unpickles():
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(PickleRejected):
        decoder.decode(buffer.getvalue(), content_types.NPY)


def test_core_7_7_decode_unsupported_type_is_the_toolkit_error():
    with pytest.raises(errors.UnsupportedFormatError) as caught:
        decoder.decode(b"\x89PNG", "image/png")
    assert "image/png" in str(caught.value)
    assert classify(caught.value, "input")[0] == 415 and classify(caught.value, "output")[0] == 406


def test_core_7_7_encode_json_csv_npy_as_the_toolkit_writes_them():
    assert encoder.encode(np.array([[1.5, 2]]), content_types.JSON) == "[[1.5, 2.0]]"
    assert encoder.encode({"a": np.array([1, 2])}, content_types.JSON) == '{"a": [1, 2]}'
    assert encoder.encode(np.float32(0.5), content_types.JSON) == "0.5"
    assert encoder.encode([[1, 2], [3, 4]], content_types.CSV) == "1,2\n3,4\n"
    assert encoder.encode(np.array([[True, False]]), content_types.CSV) == "True,False\n"
    body = encoder.encode(np.arange(6).reshape(2, 3), content_types.NPY)
    assert isinstance(body, bytes)
    assert np.load(io.BytesIO(body), allow_pickle=False).tolist() == [[0, 1, 2], [3, 4, 5]]
    assert encoder.SUPPORTED_CONTENT_TYPES == {"application/json", "text/csv", "application/x-npy"}


def test_core_7_7_encode_refuses_to_pickle_and_unknown_types():
    with pytest.raises(EncodeError):
        encoder.encode({"a": 1}, content_types.NPY)
    with pytest.raises(errors.UnsupportedFormatError):
        encoder.encode([1], "application/x-protobuf")


def test_core_7_7_toolkit_errors_carry_status_message_phrase():
    error = errors.BaseInferenceToolkitError(503, "busy", "Service Unavailable")
    assert (error.status_code, error.message, error.phrase, error.args) == (503, "busy", "Service Unavailable",
                                                                          (503, "busy", "Service Unavailable"))
    generic = errors.GenericInferenceToolkitError(422)
    assert (generic.status_code, generic.message, generic.phrase) == (422, "Invalid Request", "Invalid Request")
    assert classify(errors.GenericInferenceToolkitError(422, "x"), "predict") == (422, "GenericInferenceToolkitError",
                                                                                  "x")


def test_core_7_7_utils():
    assert utils.parse_accept("application/json, text/csv;q=0.5") == ["application/json", "text/csv;q=0.5"]
    assert utils.retrieve_content_type_header({"Accept": "x", "content-type": "text/csv"}) == "text/csv"
    assert utils.retrieve_content_type_header({"Accept": "x"}) is None
    assert utils.remove_crlf("a\r\nb") == "a  b"


def test_core_7_7_default_inference_handler():
    handler = default_inference_handler.DefaultInferenceHandler()
    with pytest.raises(NotImplementedError):
        handler.default_model_fn("/opt/ml/model")
    with pytest.raises(NotImplementedError):
        handler.default_predict_fn([1], "model")
    assert handler.default_input_fn("[1, 2]", "application/json").tolist() == [1, 2]
    body, content_type = handler.default_output_fn(np.array([1.0]), "application/x-protobuf, text/csv")
    assert (body, content_type) == ("1.0\n", "text/csv")
    assert json.loads(handler.default_output_fn([1], "application/json")[0]) == [1]
    with pytest.raises(errors.UnsupportedFormatError):
        handler.default_output_fn([1], "application/x-protobuf")
