"""core §7.7: a user script written for AWS's containers, importing the toolkit the way AWS's examples do
(`from sagemaker_inference import content_types, decoder, encoder, errors`), served unchanged; the answers are
the toolkit's bytes. Runs against the host process and against every family image."""

from __future__ import annotations

import io

import numpy as np
import pytest

from ..models import from_npy, make_dir, npy, write_code
from .core_scripts import ONE_WORKER, error

AWS_STYLE = '''
from sagemaker_inference import content_types, decoder, encoder, errors


def model_fn(model_dir):
    return lambda array: array * 2


def input_fn(input_data, content_type):
    if content_type not in (content_types.JSON, content_types.CSV, content_types.NPY):
        raise errors.UnsupportedFormatError(content_type)
    return decoder.decode(input_data, content_type)


def predict_fn(data, model):
    if data.size == 0:
        raise errors.GenericInferenceToolkitError(422, "empty input")
    return model(data)


def output_fn(prediction, accept):
    if accept not in encoder.SUPPORTED_CONTENT_TYPES:
        raise errors.UnsupportedFormatError(accept)
    return encoder.encode(prediction, accept), accept
'''


@pytest.fixture(scope="module")
def toolkit_script(module_servers, tmp_path_factory):
    model_dir = make_dir(tmp_path_factory.mktemp("toolkit"))
    write_code(model_dir, AWS_STYLE)
    return module_servers(model_dir, ONE_WORKER)


@pytest.mark.parametrize("content_type, body, accept, expected", [
    ("application/json", "[[1, 2], [3, 4]]", "application/json", b"[[2, 4], [6, 8]]"),
    ("application/json", "[0.5, 1.5]", "text/csv", b"1.0\n3.0\n"),
    ("text/csv", "1,2\n3,4", "text/csv", b"2,4\n6,8\n"),
])
def test_core_7_7_aws_style_script_answers_the_toolkit_bytes(toolkit_script, content_type, body, accept, expected):
    response = toolkit_script.post(data=body, content_type=content_type, accept=accept)
    assert response.status_code == 200, response.text
    assert response.content == expected
    assert response.headers["Content-Type"].startswith(accept)


def test_core_7_7_aws_style_script_npy_round_trip(toolkit_script):
    response = toolkit_script.post(data=npy(np.arange(6, dtype=np.float32).reshape(2, 3)),
                                   content_type="application/x-npy", accept="application/x-npy")
    assert response.status_code == 200, response.text
    result = from_npy(response.content)
    assert result.dtype == np.float32 and result.tolist() == [[0, 2, 4], [6, 8, 10]]


def test_core_7_7_aws_style_script_errors_map_to_statuses(toolkit_script):
    error(toolkit_script.post(data=b"\x89PNG", content_type="image/png"), 415)
    error(toolkit_script.post(data="[1]", accept="application/x-protobuf"), 406)
    assert error(toolkit_script.post(data="[]", accept="application/json"), 422)["message"] == "empty input"
    pickled = io.BytesIO()
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    error(toolkit_script.post(data=pickled.getvalue(), content_type="application/x-npy"), 400, "PickleRejected")
    assert toolkit_script.post(data="[1]", accept="application/json").content == b"[2]"
