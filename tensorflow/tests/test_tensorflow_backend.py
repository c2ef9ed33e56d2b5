"""The TF Serving REST API as the backends answer it (spec tensorflow.md §9, checklist items in the test names).

Each backend runs as a real process on free loopback ports with a generated model config and is called over real
HTTP. The fixture is parametrized over the built-in backend and the real `tensorflow_model_server` (skipped when
it is not on PATH): the same assertions must hold for both, which is what makes the built-in backend a drop-in.
The unit tests at the end pin number text, rapidjson layout and parse errors without a process.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.families import require_framework

require_framework("tensorflow")

import numpy as np  # noqa: E402
import requests  # noqa: E402
import tf_models  # noqa: E402

from smserve_tensorflow.backend import decimal_text, json_parsing, json_responses, json_values  # noqa: E402
from smserve_tensorflow.backend.errors import BackendError  # noqa: E402
from smserve_tensorflow.backend.tensors import RequestFormat  # noqa: E402

TFS_BINARY = "tensorflow_model_server"
START_TIMEOUT = 120.0
HALF_PLUS_THREE = "/v1/models/half_plus_three"


# ---------------------------------------------------------------------------------------------------------------
# Fixtures: models, config, one backend process per parametrization


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def model_config(tmp_path_factory) -> Path:
    """All test models under one folder, and a ModelServerConfig naming each (half_plus_three: 123 and 124)."""
    root = tmp_path_factory.mktemp("tf-backend-models")
    entries = []
    for name, build in tf_models.ALL_BUILDERS.items():
        base_path = build(root)
        policy = ("model_version_policy { specific { versions: 123 versions: 124 } }"
                  if name == "half_plus_three" else "")
        entries.append(f'  config {{ name: "{name}" base_path: "{base_path}" model_platform: "tensorflow" '
                       f"{policy} }}")
    config = root / "models.config"
    config.write_text("model_config_list {\n" + "\n".join(entries) + "\n}\n")
    return config


@dataclass
class Backend:
    kind: str
    process: subprocess.Popen
    rest_port: int
    grpc_port: int
    log_path: Path
    started_in: float

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.rest_port}{path}"

    def post(self, path: str, body: str | bytes | dict) -> requests.Response:
        data = json.dumps(body) if isinstance(body, dict) else body
        return requests.post(self.url(path), data=data, timeout=30)

    def get(self, path: str) -> requests.Response:
        return requests.get(self.url(path), timeout=30)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def backend_argv(kind: str, grpc_port: int, rest_port: int, config: Path) -> list[str]:
    program = [shutil.which(TFS_BINARY)] if kind == "tfs" else [sys.executable, "-m", "smserve_tensorflow.backend"]
    return program + [f"--port={grpc_port}", f"--rest_api_port={rest_port}", f"--model_config_file={config}",
                      "--max_num_load_retries=0"]


def _wait_until_available(backend: Backend) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if backend.process.poll() is not None:
            pytest.fail(f"{backend.kind} backend exited with {backend.process.returncode}:\n{backend.log()}")
        try:
            answer = requests.get(backend.url(HALF_PLUS_THREE), timeout=2)
            states = [v["state"] for v in answer.json()["model_version_status"]] if answer.ok else []
            if states and all(state == "AVAILABLE" for state in states):
                return
        except (requests.ConnectionError, requests.Timeout, ValueError, KeyError):
            pass
        time.sleep(0.1)
    pytest.fail(f"{backend.kind} backend not ready in {START_TIMEOUT} s:\n{backend.log()}")


@pytest.fixture(scope="module", params=["builtin", "tfs"])
def backend(request, model_config, tmp_path_factory):
    kind = request.param
    if kind == "tfs" and shutil.which(TFS_BINARY) is None:
        pytest.skip(f"{TFS_BINARY} is not on PATH")
    grpc_port, rest_port = _free_port(), _free_port()
    log_path = tmp_path_factory.mktemp(f"backend-{kind}") / "backend.log"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    started = time.monotonic()
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(backend_argv(kind, grpc_port, rest_port, model_config), stdout=log_file,
                                   stderr=subprocess.STDOUT, env=env)
    running = Backend(kind, process, rest_port, grpc_port, log_path, 0.0)
    try:
        _wait_until_available(running)
        running.started_in = time.monotonic() - started
        yield running
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def error_of(response: requests.Response) -> str:
    """The `error` text of a TF Serving error answer (a JSON object with that one key)."""
    document = response.json()
    assert list(document) == ["error"], response.text
    return document["error"]


def assert_next_request_works(backend: Backend) -> None:
    answer = backend.post(f"{HALF_PLUS_THREE}:predict", '{"instances": [1.0, 2.0, 5.0]}')
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"predictions": [3.5, 4.0, 5.5]}


# ---------------------------------------------------------------------------------------------------------------
# Status and metadata


def test_tf_27_backend_lists_versions_123_and_124_available(backend):
    answer = backend.get(HALF_PLUS_THREE)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "application/json"
    ok = {"error_code": "OK", "error_message": ""}
    assert answer.json() == {"model_version_status": [
        {"version": "124", "state": "AVAILABLE", "status": ok},
        {"version": "123", "state": "AVAILABLE", "status": ok}]}
    one = backend.get(f"{HALF_PLUS_THREE}/versions/123")
    assert one.json() == {"model_version_status": [{"version": "123", "state": "AVAILABLE", "status": ok}]}


def test_tf_4_hidden_version_directory_is_not_served(backend):
    answer = backend.get(f"{HALF_PLUS_THREE}/versions/111")
    assert answer.status_code == 404
    assert error_of(answer) == "Could not find version 111 of model half_plus_three"


def test_tf_26_unknown_model_status_is_404(backend):
    answer = backend.get("/v1/models/no_such_model")
    assert answer.status_code == 404
    assert error_of(answer) == "Could not find any versions of model no_such_model"


def test_tf_28_metadata_lists_input_x_dt_float_for_serving_default(backend):
    answer = backend.get(f"{HALF_PLUS_THREE}/metadata")
    assert answer.status_code == 200
    document = answer.json()
    assert document["model_spec"] == {"name": "half_plus_three", "signature_name": "", "version": "124"}
    signatures = document["metadata"]["signature_def"]["signature_def"]
    serving_default = signatures["serving_default"]
    assert serving_default["method_name"] == "tensorflow/serving/predict"
    x = serving_default["inputs"]["x"]
    assert x["dtype"] == "DT_FLOAT"
    assert x["tensor_shape"] == {"dim": [{"size": "-1", "name": ""}], "unknown_rank": False}
    assert serving_default["outputs"]["y"]["dtype"] == "DT_FLOAT"
    assert signatures["tensorflow/serving/regress"]["method_name"] == "tensorflow/serving/regress"
    assert signatures["tensorflow/serving/regress"]["inputs"]["inputs"]["dtype"] == "DT_STRING"
    specific = backend.get(f"{HALF_PLUS_THREE}/versions/123/metadata").json()
    assert specific["model_spec"]["version"] == "123"


def test_metadata_of_unknown_version_is_404_servable_not_found(backend):
    answer = backend.get(f"{HALF_PLUS_THREE}/versions/7/metadata")
    assert answer.status_code == 404
    assert error_of(answer) == "Servable not found for request: Specific(half_plus_three, 7)"


# ---------------------------------------------------------------------------------------------------------------
# Predict


def test_tf_2_instances_1_2_5_predict_3_5_4_5_5(backend):
    answer = backend.post(f"{HALF_PLUS_THREE}:predict", '{"instances": [1,2,5]}')
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.json() == {"predictions": [3.5, 4.0, 5.5]}


def test_tf_3_versions_123_and_124_both_answer(backend):
    for version in (123, 124):
        answer = backend.post(f"{HALF_PLUS_THREE}/versions/{version}:predict", '{"instances": [1.0]}')
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"predictions": [3.5]}


def test_tf_5_two_rows_give_two_prediction_rows(backend):
    answer = backend.post(f"{HALF_PLUS_THREE}:predict", '{"instances": [[1,2,5],[1,2,5]]}')
    assert answer.json() == {"predictions": [[3.5, 4.0, 5.5], [3.5, 4.0, 5.5]]}


def test_tf_29_columnar_inputs_give_outputs(backend):
    answer = backend.post(f"{HALF_PLUS_THREE}:predict", '{"inputs": [1,2,5]}')
    assert answer.status_code == 200
    assert answer.json() == {"outputs": [3.5, 4.0, 5.5]}
    named = backend.post("/v1/models/arithmetic:predict", '{"inputs": {"a": [1, 2], "b": [4, 8]}}')
    assert named.json() == {"outputs": {"sum": [5.0, 10.0], "product": [4.0, 16.0], "quotient": [0.25, 0.25]}}


def test_named_instances_give_one_object_per_row(backend):
    answer = backend.post("/v1/models/arithmetic:predict",
                          '{"instances": [{"a": 1, "b": 4}, {"a": 3, "b": 2}]}')
    assert answer.json() == {"predictions": [{"sum": 5.0, "product": 4.0, "quotient": 0.25},
                                             {"sum": 5.0, "product": 6.0, "quotient": 1.5}]}


def test_tf_30_number_text_0_1_and_one_third(backend):
    answer = backend.post("/v1/models/arithmetic:predict",
                          '{"instances": [{"a": 1, "b": 10}, {"a": 1, "b": 3}, {"a": 3000, "b": 3000}]}')
    assert answer.status_code == 200
    text = answer.text
    assert re.search(r'"quotient":\s*0\.1\s*[,}\n]', text), text
    assert re.search(r'"quotient":\s*0\.333333343\s*[,}\n]', text), text
    assert re.search(r'"product":\s*9e\+06\s*[,}\n]', text), text
    assert re.search(r'"quotient":\s*1\.0\s*[,}\n]', text), text


def test_tf_31_16777217_rounds_to_float(backend):
    answer = backend.post("/v1/models/arithmetic:predict", '{"instances": [{"a": 16777217, "b": 1}]}')
    assert answer.status_code == 200, answer.text
    assert re.search(r'"product":\s*16777216\.0\s*[,}\n]', answer.text), answer.text
    assert answer.json()["predictions"][0]["product"] == 16777216.0


def test_tf_32_bytes_output_is_b64(backend):
    answer = backend.post("/v1/models/strings:predict", '{"instances": ["abc", {"b64": "aGk="}]}')
    assert answer.status_code == 200, answer.text
    rows = answer.json()["predictions"]
    assert rows[0] == {"upper": "ABC", "length": 3,
                       "img_bytes": {"b64": base64.b64encode(b"abc\xff\x00").decode()}}
    assert rows[1]["img_bytes"] == {"b64": base64.b64encode(b"hi\xff\x00").decode()}
    assert rows[1]["upper"] == "HI"
    columnar = backend.post("/v1/models/strings:predict", '{"inputs": ["x\\"y"]}').json()["outputs"]
    assert columnar["upper"] == ['X"Y']
    assert columnar["img_bytes"] == [{"b64": base64.b64encode(b'x"y\xff\x00').decode()}]


def test_integer_bool_and_double_tensors_keep_their_types(backend):
    body = '{"instances": [{"i32": -3, "i64": 9007199254740993, "flag": true}, {"i32": 4, "i64": 1, "flag": false}]}'
    answer = backend.post("/v1/models/integers:predict", body)
    assert answer.status_code == 200, answer.text
    rows = answer.json()["predictions"]
    assert rows[0]["i32_doubled"] == -6 and rows[0]["i64_plus_one"] == 9007199254740994
    assert rows[0]["flag_not"] is False and rows[1]["flag_not"] is True
    assert re.search(r'"i64_third":\s*0\.33333333333333331\s*[,}\n]', answer.text), answer.text
    assert re.search(r'"i64_third":\s*3002399751580330\.5\s*[,}\n]', answer.text), answer.text


def test_nan_and_infinity_are_accepted_and_written(backend):
    answer = backend.post(f"{HALF_PLUS_THREE}:predict", '{"instances": [NaN, Infinity, -Infinity]}')
    assert answer.status_code == 200, answer.text
    assert re.fullmatch(r"\{\s*\"predictions\":\s*\[NaN,\s*Infinity,\s*-Infinity\s*\]\s*\}", answer.text)


def test_paths_are_case_insensitive(backend):
    answer = backend.post("/V1/Models/half_plus_three/VERSIONS/123:predict", '{"instances": [1.0]}')
    assert answer.status_code == 200
    assert answer.json() == {"predictions": [3.5]}


def test_tf_26_unknown_model_404_servable_not_found(backend):
    answer = backend.post("/v1/models/no_such_model:predict", '{"instances": [1.0]}')
    assert answer.status_code == 404
    assert error_of(answer) == "Servable not found for request: Latest(no_such_model)"
    answer = backend.post(f"{HALF_PLUS_THREE}/versions/125:predict", '{"instances": [1.0]}')
    assert answer.status_code == 404
    assert error_of(answer) == "Servable not found for request: Specific(half_plus_three, 125)"
    assert_next_request_works(backend)


# ---------------------------------------------------------------------------------------------------------------
# Predict request errors (§9.2): exact texts, and the next request still works


def _halves(body: str) -> tuple[str, str]:
    return f"{HALF_PLUS_THREE}:predict", body


PREDICT_ERRORS = {
    "empty_body": (*_halves(""), "JSON Parse error: The document is empty"),
    "syntax_error_with_offset": (*_halves('{"instances": [1, 2}'),
                                 "JSON Parse error: Missing a comma or ']' after an array element. at offset: 19"),
    "tf_16_whatever": (*_halves("whatever"), "JSON Parse error: Invalid value. at offset: 0"),
    "not_an_object": (*_halves("[1, 2]"), "JSON Value: [\n    1,\n    2\n] Is not object"),
    "both_keys": (*_halves('{"instances": [1], "inputs": [1]}'),
                  'JSON Value: {\n    "instances": [\n        1\n    ],\n    "inputs": [\n        1\n    ]\n} '
                  "Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist "),
    "neither_key": (*_halves('{"signature_name": "serving_default"}'), "Missing 'inputs' or 'instances' key"),
    "instances_not_a_list": (*_halves('{"instances": 1}'),
                             "JSON Value: {\n    \"instances\": 1\n} Excepting 'instances' to be an list/array"),
    "empty_instances": (*_halves('{"instances": []}'),
                        "JSON Value: {\n    \"instances\": []\n} No values in 'instances' array"),
    "ragged_rows": (*_halves('{"instances": [[1, 2], [1]]}'),
                    "Failed to process element: 1 of 'instances' list. Error: INVALID_ARGUMENT: "
                    "Expecting tensor size: 2 but got: 1"),
    "tf_9_string_for_float": (*_halves('{"instances": ["]["]}'),
                              "Failed to process element: 0 of 'instances' list. Error: INVALID_ARGUMENT: "
                              'JSON Value: "][" Type: String is not of expected type: float'),
    "bool_for_float": (*_halves('{"instances": [1.0, true]}'),
                       "Failed to process element: 1 of 'instances' list. Error: INVALID_ARGUMENT: "
                       "JSON Value: true Type: True is not of expected type: float"),
    "tf_17_junk_key": (*_halves('{"instances": [{"junk": "data"}]}'),
                       "Failed to process element: 0 key: junk of 'instances' list. Error: INVALID_ARGUMENT: "
                       "JSON object: does not have named input: junk"),
    "row_shape_differs": (*_halves('{"instances": [1, [2]]}'),
                          "Failed to process element: 1 of 'instances' list. Error: INVALID_ARGUMENT: "
                          "Expecting shape [] but got: [1]"),
    "list_deeper_than_shape": (*_halves('{"instances": [[1, [2]]]}'),
                               "Failed to process element: 0 of 'instances' list. Error: INVALID_ARGUMENT: "
                               "Encountered list at unexpected level: 1 expected < 1"),
    "value_above_leaf_level": (*_halves('{"instances": [[[1], 2]]}'),
                               "Failed to process element: 0 of 'instances' list. Error: INVALID_ARGUMENT: "
                               "JSON Value: 2 found at incorrect level: 2 in the JSON DOM. Expected at level: 2"),
    "object_after_values": (*_halves('{"instances": [1, {"x": 2}]}'),
                            "Expecting value/list but got object at item 1 of input list"),
    "signature_name_not_string": (*_halves('{"signature_name": 1, "instances": [1]}'),
                                  'JSON Value: {\n    "signature_name": 1,\n    "instances": [\n        1\n    ]\n} '
                                  "not formatted correctly. 'signature_name' key must be a string value."),
    "unknown_signature": (*_halves('{"signature_name": "nope", "instances": [1]}'),
                          'Serving signature name: "nope" not found in signature def'),
    "wrong_dtype_int32": ("/v1/models/integers:predict",
                          '{"instances": [{"i32": 1.5, "i64": 1, "flag": true}]}',
                          "Failed to process element: 0 key: i32 of 'instances' list. Error: INVALID_ARGUMENT: "
                          "JSON Value: 1.5 Type: Number is not of expected type: int32"),
    "missing_named_input": ("/v1/models/arithmetic:predict", '{"inputs": {"a": [1]}}',
                            "Missing named input: b in 'inputs' object."),
    "mixed_objects_and_lists": ("/v1/models/arithmetic:predict", '{"instances": [{"a": 1, "b": 2}, [1, 2]]}',
                                "Expecting object but got list at item 1 of input list"),
    "keys_not_equal_to_inputs": ("/v1/models/arithmetic:predict", '{"instances": [{"a": 1}]}',
                                 "Failed to process element: 0 of 'instances' list. JSON object: "
                                 '{\n    "a": 1\n} keys must be equal to: a,b'),
    "plain_list_for_two_inputs": ("/v1/models/arithmetic:predict", '{"instances": [1, 2]}',
                                  "instances is a plain list, but expecting list of objects as multiple input "
                                  "tensors required as per tensorinfo_map"),
}


@pytest.mark.parametrize("case", list(PREDICT_ERRORS))
def test_predict_error_text_then_next_request_succeeds(backend, case):
    path, body, expected = PREDICT_ERRORS[case]
    answer = backend.post(path, body)
    assert answer.status_code == 400, answer.text
    assert error_of(answer) == expected
    assert_next_request_works(backend)


def test_tf_9_error_names_instances_unescaped(backend):
    answer = backend.post(f"{HALF_PLUS_THREE}:predict", '{"instances": ["]["]}')
    message = error_of(answer)
    assert message.endswith("is not of expected type: float")
    assert "'instances'" in message


def test_malformed_paths_are_400_with_the_path(backend):
    answer = backend.post(f"{HALF_PLUS_THREE}:explain", "{}")
    assert answer.status_code == 400
    assert error_of(answer) == f"Malformed request: POST {HALF_PLUS_THREE}:explain"
    answer = backend.get("/v1/models")
    assert answer.status_code == 400
    assert error_of(answer) == "Missing model name in request."
    answer = requests.delete(backend.url(HALF_PLUS_THREE), timeout=10)
    assert answer.status_code == 400
    assert error_of(answer) == f"Malformed request: DELETE {HALF_PLUS_THREE}"


def test_version_labels_are_not_configured(backend):
    if backend.kind == "tfs":
        pytest.skip("spec §9.1 answers 404 for labels in the built-in backend; the real server answers 400")
    answer = backend.post(f"{HALF_PLUS_THREE}/labels/stable:predict", '{"instances": [1.0]}')
    assert answer.status_code == 404
    assert error_of(answer) == "Unrecognized servable version label: stable"


# ---------------------------------------------------------------------------------------------------------------
# Classify and regress (§9.5)


REGRESS = f"{HALF_PLUS_THREE}:regress"
REGRESS_SIGNATURE = '"signature_name": "tensorflow/serving/regress"'


def test_tf_15_regress_two_examples(backend):
    answer = backend.post(REGRESS, '{%s, "examples": [{"x": 1.0}, {"x": 2.0}]}' % REGRESS_SIGNATURE)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"results": [3.5, 4.0]}


def test_tf_15_regress_one_example(backend):
    answer = backend.post(REGRESS, '{%s, "examples": [{"x": 1.0}]}' % REGRESS_SIGNATURE)
    assert answer.json() == {"results": [3.5]}


def test_tf_15_regress_int64_feature_is_400(backend):
    answer = backend.post(REGRESS, '{%s, "examples": [{"x": 1}]}' % REGRESS_SIGNATURE)
    assert answer.status_code == 400
    assert "Data types don't match" in error_of(answer)
    assert_next_request_works(backend)


def test_regress_needs_a_regress_signature(backend):
    answer = backend.post(REGRESS, '{"examples": [{"x": 1.0}]}')
    assert answer.status_code == 400
    assert error_of(answer) == ("Expected regression signature method_name to be tensorflow/serving/regress. "
                                "Was: tensorflow/serving/predict")


@pytest.mark.parametrize("body, expected", [
    ('{"instances": [1]}', "JSON Value: {\n    \"instances\": [\n        1\n    ]\n} When method is classify, "
                           "key 'examples' is expected and was not found"),
    ('{"examples": []}', "JSON Value: {\n    \"examples\": []\n} 'examples' value is an empty array"),
    ('{"examples": [{"x": null}]}', "Feature: x has element with unexpected JSON type: Null"),
    ('{"examples": [{"x": [1.0, "a"]}]}', "Unexpected element type in feature: x expecting type: float"),
])
def test_regress_request_errors(backend, body, expected):
    answer = backend.post(REGRESS, body)
    assert answer.status_code == 400
    assert error_of(answer) == expected


def test_classify_gives_label_score_pairs(backend):
    answer = backend.post("/v1/models/classifier:classify", '{"examples": [{"x": 0.0}, {"x": 1.0}]}')
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"results": [[["negative", 0.5], ["positive", 0.5]],
                                         [["negative", 0.268941402], ["positive", 0.731058598]]]}
    assert "0.268941402" in answer.text and "0.731058598" in answer.text


def test_classify_with_context_shares_features(backend):
    answer = backend.post("/v1/models/classifier:classify", '{"context": {"x": 0.0}, "examples": [{}, {"x": 1.0}]}')
    assert answer.json() == {"results": [[["negative", 0.5], ["positive", 0.5]],
                                         [["negative", 0.268941402], ["positive", 0.731058598]]]}


# ---------------------------------------------------------------------------------------------------------------
# The process: ready lines, flags, load failures, SIGTERM (built-in backend)


def test_backend_logs_ready_lines(backend):
    if backend.kind == "tfs":
        pytest.skip("the real server's log lines carry its own prefixes")
    log = backend.log()
    assert f"Exporting HTTP/REST API at:localhost:{backend.rest_port} ..." in log
    assert "Successfully loaded servable version {name: half_plus_three version: 123}" in log
    print(f"built-in backend ready in {backend.started_in:.1f} s")


def test_backend_exits_0_on_sigterm(backend):
    """Last test of each parametrization: it stops the module's backend."""
    if backend.kind == "tfs":
        pytest.skip("exit status of the real binary is not part of the contract")
    backend.process.send_signal(signal.SIGTERM)
    assert backend.process.wait(timeout=30) == 0


def test_unknown_flag_exits_2_naming_it():
    result = subprocess.run([sys.executable, "-m", "smserve_tensorflow.backend", "--port=1", "--no_such_flag=3"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "no_such_flag" in result.stderr


def test_model_that_fails_to_load_exits_nonzero_with_its_path(tmp_path):
    version = tmp_path / "broken" / "1"
    version.mkdir(parents=True)
    (version / "saved_model.pb").write_bytes(b"this is not a SavedModel")
    config = tmp_path / "models.config"
    config.write_text(f'model_config_list {{ config {{ name: "broken" base_path: "{version.parent}" '
                      'model_platform: "tensorflow" } }\n')
    result = subprocess.run(backend_argv("builtin", _free_port(), _free_port(), config), capture_output=True,
                            text=True, timeout=120, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert result.returncode == 1
    assert f"Failed to load model broken version 1 from {version}" in result.stderr


# ---------------------------------------------------------------------------------------------------------------
# Units: number text (§9.4), rapidjson layout, parse errors


@pytest.mark.parametrize("value, text", [
    (0.1, "0.1"), (1.0, "1.0"), (9000000.0, "9e+06"), (1 / 3, "0.333333343"), (3.5, "3.5"),
    (16777217.0, "16777216.0"), (1e-5, "1e-05"), (0.0, "0.0"), (-0.0, "-0.0"), (123456789.0, "123456792.0"),
    (float("nan"), "NaN"), (float("inf"), "Infinity"), (float("-inf"), "-Infinity"), (3.4028235e38, "3.40282347e+38"),
])
def test_float_number_text(value, text):
    assert decimal_text.format_decimal(value) == text
    assert decimal_text.decimal_tokens(np.array([value], dtype=np.float32)) == [text]


@pytest.mark.parametrize("value, text", [
    (0.1, "0.1"), (1 / 3, "0.33333333333333331"), (1.0, "1.0"), (1e100, "1e+100"), (2.0**60, "1.152921504606847e+18"),
])
def test_double_number_text_falls_back_to_17_digits(value, text):
    assert decimal_text.format_decimal(value, double=True) == text
    assert decimal_text.decimal_tokens(np.array([value], dtype=np.float64)) == [text]


def test_vectorised_number_text_matches_one_by_one():
    random_bits = np.random.default_rng(7).integers(0, 2**32, 20000, dtype=np.uint64).astype(np.uint32)
    values = np.concatenate([random_bits.view(np.float32), np.arange(-50, 50, dtype=np.float32) / 8])
    one_by_one = [decimal_text.format_decimal(v) for v in values.tolist()]
    assert decimal_text.decimal_tokens(values) == one_by_one
    assert decimal_text._few_decimal_tokens(values.tolist(), double=False) == one_by_one


def test_half_prints_like_float():
    assert decimal_text.decimal_tokens(np.array([0.5, 1.0, 0.1], dtype=np.float16)) == ["0.5", "1.0", "0.0999755859"]


def test_row_layout_is_rapidjson_pretty_writer():
    single = json_responses.predict_response_body({"y": np.array([3.5, 4.0, 5.5], np.float32)}, RequestFormat.ROW)
    assert single == b'{\n    "predictions": [3.5, 4.0, 5.5\n    ]\n}'
    matrix = json_responses.predict_response_body({"y": np.ones((2, 2), np.float32)}, RequestFormat.ROW)
    assert matrix == b'{\n    "predictions": [[1.0, 1.0], [1.0, 1.0]\n    ]\n}'
    several = json_responses.predict_response_body({"a": np.array([1], np.int64), "b": np.array([b"x"], object)},
                                                   RequestFormat.ROW)
    assert several == (b'{\n    "predictions": [\n        {\n            "a": 1,\n            "b": "x"\n'
                       b'        }\n    ]\n}')


def test_columnar_layout_is_rapidjson_pretty_writer():
    body = json_responses.predict_response_body({"y": np.array([3.5, 4.0], np.float32)}, RequestFormat.COLUMNAR)
    assert body == b'{\n    "outputs": [\n        3.5,\n        4.0\n    ]\n}'
    b64 = json_responses.predict_response_body({"img_bytes": np.array([b"\x00"], object)}, RequestFormat.COLUMNAR)
    assert b64 == b'{\n    "outputs": [\n        {\n            "b64": "AA=="\n        }\n    ]\n}'


def test_error_body_and_results_layout():
    assert json_responses.error_body('a "b"\n') == b'{\n    "error": "a \\"b\\"\\n"\n}'
    assert json_responses.regress_response_body(np.array([3.5, 4.0])) == b'{\n    "results": [3.5, 4.0]\n}'
    assert json_responses.classify_response_body([[b"a"]], np.array([[0.5]])) == (
        b'{\n    "results": [[["a", 0.5]]\n    ]\n}')


@pytest.mark.parametrize("body, message", [
    (b"", "JSON Parse error: The document is empty"),
    (b"  ", "JSON Parse error: The document is empty. at offset: 2"),
    (b'{"a": 1,}', "JSON Parse error: Missing a name for object member. at offset: 8"),
    (b'{"a" 1}', "JSON Parse error: Missing a colon after a name of object member. at offset: 5"),
    (b'{"a": 1 "b": 2}', "JSON Parse error: Missing a comma or '}' after an object member. at offset: 8"),
    (b'"abc', "JSON Parse error: Missing a closing quotation mark in string. at offset: 4"),
    (b'["\\x"]', "JSON Parse error: Invalid escape character in string. at offset: 2"),
    (b'["\\u12G4"]', "JSON Parse error: Incorrect hex digit after \\u escape in string. at offset: 2"),
    (b'["\\ud800x"]', "JSON Parse error: The surrogate pair in string is invalid. at offset: 2"),
    (b"[1e400]", "JSON Parse error: Number too big to be stored in double. at offset: 1"),
    (b"[1.]", "JSON Parse error: Miss fraction part in number. at offset: 3"),
    (b"[1e+]", "JSON Parse error: Miss exponent in number. at offset: 4"),
    (b"[tru]", "JSON Parse error: Invalid value. at offset: 4"),
    (b'{"a": 1} 2', "JSON Parse error: The document root must not be followed by other values. at offset: 9"),
])
def test_parse_errors_match_rapidjson(body, message):
    with pytest.raises(BackendError) as caught:
        json_parsing.parse_json_document(body)
    assert caught.value.message == message
    assert caught.value.http_status == 400


def test_nan_infinity_and_inf_tokens_parse():
    document = json_parsing.parse_json_document(b'{"a": [NaN, Infinity, -Infinity, Inf, -Inf]}')
    values = document["a"]
    assert np.isnan(values[0]) and values[1:] == [float("inf"), float("-inf"), float("inf"), float("-inf")]


def test_quoted_values_in_errors_use_rapidjson_text():
    assert json_values.json_value_text(0.1) == "0.1"
    assert json_values.json_value_text(1e300) == "1e+300"
    assert json_values.json_value_text({"a": [1, 2.5, 1e21, None]}) == (
        '{\n    "a": [\n        1,\n        2.5,\n        1e21,\n        null\n    ]\n}')
