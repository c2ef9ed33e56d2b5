"""tensorflow.md §14 checklist through the front: real SavedModels, `smserve serve` (host process or the
tensorflow image) with its backend, real HTTP on /invocations. The backend's own REST API is covered by
test_tensorflow_backend.py; the pure conversion rules by test_tensorflow_front_units.py."""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import subprocess
import time
import textwrap
import threading
from pathlib import Path

import pytest
import requests

from tests.families import require_framework
from tests.harness import FAMILY, TARGET

require_framework("tensorflow")

import tf_models  # noqa: E402  (needs tensorflow)

pytestmark = pytest.mark.skipif(FAMILY != "tensorflow",
                                reason="TensorFlow family suite: set SMSERVE_TEST_FAMILY=tensorflow")
CSV = "text/csv"
ATTRS = "X-Amzn-SageMaker-Custom-Attributes"


def port_range(size: int = 10) -> str:
    """A free block of loopback ports for the backends: without SAGEMAKER_SAFE_PORT_RANGE instance 0 takes AWS's
    fixed 9000/8501, which two servers in one test run cannot share."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            low = probe.getsockname()[1]
        if low + size > 65535:
            continue
        held = []
        try:
            for port in range(low, low + size + 1):
                s = socket.socket()
                s.bind(("127.0.0.1", port))
                held.append(s)
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
        return f"{low}-{low + size}"
    raise RuntimeError("no free port block")


def tf_env(**extra) -> dict:
    return {"SAGEMAKER_SAFE_PORT_RANGE": port_range(), **extra}


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory) -> Path:
    """half_plus_three (versions 123, 124 and a hidden .00000111) and the other fixtures, built once."""
    root = tmp_path_factory.mktemp("tf-models")
    tf_models.half_plus_three(root)
    return root


def model_dir(saved_models: Path, tmp: Path, *models: str, code: dict[str, str] | None = None) -> Path:
    root = tmp / "model"
    root.mkdir(parents=True)
    for name in models or ("half_plus_three",):
        shutil.copytree(saved_models / name, root / name)
    for relative, text in (code or {}).items():
        path = root / "code" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


@pytest.fixture(scope="module")
def hpt(saved_models, tmp_path_factory, module_servers):
    """One server for the default-conversion items: half_plus_three, no handler code."""
    return module_servers(model_dir(saved_models, tmp_path_factory.mktemp("hpt")), tf_env())


def predictions(response) -> list:
    assert response.status_code == 200, response.text
    return response.json()["predictions"]


# ------------------------------------------------------------------ discovery and default conversion
def test_tf_1_model_at_version_dir_is_served_as_model(saved_models, tmp_path, serve):
    root = tmp_path / "model"
    shutil.copytree(saved_models / "half_plus_three" / "00000123", root / "1")
    server = serve(root, tf_env())
    assert predictions(server.post(data='{"instances": [1.0]}')) == [3.5]
    assert "name: \"model\"" in server.logs() or "'model'" in server.logs()


def test_tf_2_instances_predict(hpt):
    assert predictions(hpt.post(data='{"instances": [1,2,5]}')) == [3.5, 4.0, 5.5]


def test_tf_3_both_versions_answer_when_named(hpt):
    for version in ("123", "124"):
        response = hpt.post(data='{"instances": [1.0]}', headers={ATTRS: f"tfs-model-version={version}"})
        assert predictions(response) == [3.5]


def test_tf_4_hidden_version_directory_is_ignored(hpt):
    response = hpt.post(data='{"instances": [1.0]}', headers={ATTRS: "tfs-model-version=111"})
    assert response.status_code == 404, response.text


def test_tf_5_nested_rows(hpt):
    assert predictions(hpt.post(data="[[1,2,5],[1,2,5]]")) == [[3.5, 4.0, 5.5]] * 2


@pytest.mark.parametrize("content_type", ["application/json", "application/jsonlines", "application/jsons"])
def test_tf_6_json_lines_under_each_json_type(hpt, content_type):
    assert predictions(hpt.post(data="[1,2,5]\n[1,2,5]", content_type=content_type)) == [[3.5, 4.0, 5.5]] * 2


def test_tf_7_json_lines_of_objects(hpt):
    assert predictions(hpt.post(data='{"x": [1,2,5]}\n{"x": [1,2,5]}')) == [[3.5, 4.0, 5.5]] * 2


def test_tf_8_generic_array_is_one_instance(hpt):
    assert predictions(hpt.post(data="[1,2,5]")) == [[3.5, 4.0, 5.5]]


def test_tf_9_wrong_type_error_has_instances_unescaped(hpt):
    response = hpt.post(data='{"instances": ["]["]}')
    assert response.status_code == 400
    error = response.json()["error"]
    assert error.endswith("is not of expected type: float"), error
    assert "'instances'" in error and "\\'" not in error
    assert predictions(hpt.post(data='{"instances": [1.0]}')) == [3.5]  # the next request succeeds


@pytest.mark.parametrize("body,expected", [("1.0", [3.5]), ("0.0", [3.0])])
def test_tf_10_csv_single_value(hpt, body, expected):
    assert predictions(hpt.post(data=body, content_type=CSV)) == expected


@pytest.mark.parametrize("body,expected", [("1.0,2.0,5.0", [[3.5, 4.0, 5.5]]), ("0.0,2.0,5.0", [[3.0, 4.0, 5.5]])])
def test_tf_11_csv_one_row(hpt, body, expected):
    assert predictions(hpt.post(data=body, content_type=CSV)) == expected


def test_tf_12_csv_one_column(hpt):
    assert predictions(hpt.post(data="1.0\n2.0\n5.0", content_type=CSV)) == [3.5, 4.0, 5.5]


def test_tf_13_csv_two_rows_of_thirty(hpt):
    row = ",".join(["1.0"] * 30)
    rows = predictions(hpt.post(data=f"{row}\n{row}\n", content_type=CSV))
    assert rows == [[3.5] * 30, [3.5] * 30]


def test_tf_14_csv_strings_are_a_client_error(hpt):
    response = hpt.post(data='1.0,hello,"world,earth"', content_type=CSV)
    assert 400 <= response.status_code < 500, response.text
    assert "error" in response.json()


def test_tf_15_regress_through_the_front(hpt):
    attrs = {ATTRS: "tfs-method=regress"}
    body = {"signature_name": "tensorflow/serving/regress", "examples": [{"x": 1.0}, {"x": 2.0}]}
    response = hpt.post(data=json.dumps(body), headers=attrs)
    assert response.status_code == 200, response.text
    assert response.json() == {"results": [3.5, 4.0]}
    body["examples"] = [{"x": 1.0}]
    assert hpt.post(data=json.dumps(body), headers=attrs).json() == {"results": [3.5]}
    body["examples"] = [{"x": 1}]
    assert hpt.post(data=json.dumps(body), headers=attrs).status_code == 400


def test_tf_16_plain_text_is_a_client_error_with_error_key(hpt):
    response = hpt.post(data="whatever")
    assert 400 <= response.status_code < 500
    assert "error" in response.json()


def test_tf_17_unknown_key_is_an_element_error(hpt):
    response = hpt.post(data='{"junk": "data"}')
    assert response.status_code == 400
    assert response.json()["error"].startswith("Failed to process element: 0 key: junk of 'instances' list.")


def test_tf_18_no_custom_attributes_default_model(hpt):
    assert predictions(hpt.post(data="[1.0]")) == [[3.5]]


def test_tf_19_accept_jsonlines(hpt):
    response = hpt.post(data="[1,2,5]", accept="application/jsonlines")
    assert response.headers["Content-Type"] == "application/jsonlines"
    assert b"\n" not in response.content.rstrip(b"\n")
    assert response.json() == {"predictions": [[3.5, 4.0, 5.5]]}


def test_tf_20_accept_json_first(hpt):
    response = hpt.post(data="[1,2,5]", accept="application/json, application/jsonlines")
    assert response.headers["Content-Type"] == "application/json"


def test_tf_21_accept_csv_still_answers_json(hpt):
    response = hpt.post(data="[1,2,5]", accept=CSV)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"


def test_tf_22_unsupported_media_type(hpt):
    response = hpt.post(data=b"\x89PNG", content_type="application/x-image")
    assert response.status_code == 415
    assert "Unsupported Media Type: application/x-image" in response.json()["error"]


def test_tf_23_content_type_case_and_parameters(hpt):
    assert predictions(hpt.post(data="[1,2,5]", content_type="Application/JSON; charset=utf-8")) == [[3.5, 4.0, 5.5]]


@pytest.mark.parametrize("attribute,message", [("tfs-model-version=abc", "invalid tfs-model-version"),
                                               ("tfs-method=explain", "invalid tfs-method"),
                                               ("tfs-model-name=-bad", "invalid tfs-model-name")])
def test_tf_24_invalid_custom_attributes(hpt, attribute, message):
    response = hpt.post(data="[1.0]", headers={ATTRS: attribute})
    assert response.status_code == 400
    assert message in response.text


def test_tf_25_attribute_values_are_stripped(hpt):
    assert predictions(hpt.post(data="[1.0]", headers={ATTRS: "tfs-model-version= 123 "})) == [[3.5]]


def test_tf_26_unknown_model_is_404(hpt):
    response = hpt.post(data="[1.0]", headers={ATTRS: "tfs-model-name=nope"})
    assert response.status_code == 404
    assert "Servable not found" in response.json()["error"]


@pytest.mark.parametrize("attributes, status", [
    (None, 200),
    ("tfs-model-name=half_plus_three", 200),
    ("tfs-model-name=half_plus_three,tfs-model-version=124", 200),
    ("tfs-model-version=123", 200),                       # the default model's version
    ("tfs-model-name=nope", 503),
    ("tfs-model-name=half_plus_three,tfs-model-version=7", 503),
    ("tfs-model-version=abc", 503),
])
def test_tf_8_ping_names_a_model_200_only_when_it_is_available(hpt, attributes, status):
    """tensorflow.md §8: /ping is 200 when the default model, or the model and version the ping names with
    tfs-model-name / tfs-model-version, is AVAILABLE; else 503 (AWS: 502 with an empty body)."""
    response = requests.get(hpt.url + "/ping", headers={ATTRS: attributes} if attributes else {}, timeout=10)
    assert response.status_code == status, response.text
    if status == 503:
        assert response.json()["reason"] == "ModelNotAvailable"


def test_tf_29_columnar_through_the_front(hpt):
    response = hpt.post(data='{"inputs": [1,2,5]}')
    assert response.status_code == 200
    assert response.json() == {"outputs": [3.5, 4.0, 5.5]}


def test_tf_bad_json_then_next_request_succeeds(hpt):
    for body in ("{", '{"instances": [[1,2],[3]]}', '{"instances": [1.0], "inputs": [1.0]}', ""):
        response = hpt.post(data=body)
        assert 400 <= response.status_code < 500, (body, response.text)
        assert "Traceback" not in response.text
    assert "document is empty" in hpt.post(data="").json()["error"]
    assert predictions(hpt.post(data="[1.0]")) == [[3.5]]


def test_tf_default_path_over_http_gives_identical_answers(saved_models, tmp_path, serve, hpt):
    """SMSERVE_TF_LOCAL_CHANNEL=false: the same requests over HTTP to the backend give the same statuses and bodies
    as the local channel (spec §2: a faster channel may be used only if answers stay identical)."""
    server = serve(model_dir(saved_models, tmp_path), tf_env(SMSERVE_TF_LOCAL_CHANNEL="false"))
    for body, content_type in (('{"instances": [1,2,5]}', "application/json"), ("1.0,2.0", CSV),
                               ('{"instances": ["]["]}', "application/json"), ("{", "application/json"),
                               ('{"inputs": [1]}', "application/json")):
        a, b = hpt.post(data=body, content_type=content_type), server.post(data=body, content_type=content_type)
        assert a.status_code == b.status_code
        assert a.json().get("error") == b.json().get("error")
        assert a.json().get("predictions") == b.json().get("predictions")


# ------------------------------------------------------------------ handlers (§4, §5)
HANDLERS = """
    import json

    def input_handler(data, context):
        if context.request_content_type == "application/json":
            d = data.read().decode("utf-8")
            return d if len(d) else ""
        if context.request_content_type == "text/csv":
            return json.dumps({"instances": [float(x) for x in data.read().decode("utf-8").split(",")]})
        raise ValueError("unsupported content type {}".format(context.request_content_type or "unknown"))

    def output_handler(response, context):
        if response.status_code != 200:
            raise ValueError(response.content.decode("utf-8"))
        return json.dumps(json.loads(response.content)["predictions"]), "application/json"
"""

SINGLE_HANDLER = """
    import json
    import requests

    def handler(data, context):
        body = data.read().decode("utf-8")
        response = requests.post(context.rest_uri, data=body)
        return json.dumps(response.json()["predictions"]), "application/json"
"""


@pytest.fixture(scope="module")
def handled(saved_models, tmp_path_factory, module_servers):
    return module_servers(model_dir(saved_models, tmp_path_factory.mktemp("handled"),
                                   code={"inference.py": HANDLERS}), tf_env())


def test_tf_33_input_and_output_handlers(handled):
    response = handled.post(data='{"instances": [1,2,5]}')
    assert response.status_code == 200, response.text
    assert response.json() == [3.5, 4.0, 5.5]


def test_tf_34_handler_empty_body_reports_empty_document(handled):
    response = handled.post(data="")
    assert response.status_code >= 400
    assert "document is empty" in response.text


def test_tf_35_large_csv_line(handled):
    values = 753_936
    response = handled.post(data=",".join(["1.0"] * values), content_type=CSV, timeout=120)
    assert response.status_code == 200, response.text[:500]
    assert len(response.json()) == values


def test_tf_36_handler_raise_is_500_and_server_keeps_serving(handled):
    response = handled.post(data=b"x", content_type="application/x-image")
    assert response.status_code == 500
    assert "unsupported content type" in response.json()["error"]
    assert "Traceback" not in response.text
    assert handled.post(data='{"instances": [1.0]}').json() == [3.5]


def test_tf_37_single_handler_form(saved_models, tmp_path, serve):
    server = serve(model_dir(saved_models, tmp_path, code={"inference.py": SINGLE_HANDLER}), tf_env())
    assert server.post(data='{"instances": [1,2,5]}').json() == [3.5, 4.0, 5.5]


CONTEXT_PROBE = """
    import json

    def handler(data, context):
        return json.dumps({
            "fields": list(context._fields), "rest_uri": context.rest_uri, "grpc_port": context.grpc_port,
            "grpc_port_type": type(context.grpc_port).__name__, "channel": context.channel is not None,
            "timeout": context.timeout, "grpc_uri": context.grpc_uri, "model_name": context.model_name,
            "model_version": context.model_version, "method": context.method,
            "custom_attributes": context.custom_attributes, "content_type": context.request_content_type,
            "accept": context.accept_header, "content_length": context.content_length,
            "read": data.read().decode(), "read_type": type(data.read()).__name__,
        }), "application/json"
"""


def test_tf_40_41_context_fields(saved_models, tmp_path, serve):
    server = serve(model_dir(saved_models, tmp_path, code={"inference.py": CONTEXT_PROBE}), tf_env())
    response = server.post(data="abc", content_type="text/csv", headers={ATTRS: "tfs-model-version=123"})
    assert response.status_code == 200, response.text
    got = response.json()
    assert got["fields"] == ["model_name", "model_version", "method", "rest_uri", "grpc_port", "channel",
                             "custom_attributes", "request_content_type", "accept_header", "content_length",
                             "timeout"]
    assert got["rest_uri"].startswith("http://localhost:")
    assert got["rest_uri"].endswith("/v1/models/half_plus_three/versions/123:predict")
    assert got["grpc_port_type"] == "str" and got["channel"] is True
    assert got["grpc_uri"] == f"localhost:{got['grpc_port']}"
    assert got["timeout"] == 60
    assert got["model_name"] is None and got["model_version"] == "123" and got["method"] is None
    assert got["custom_attributes"] == "tfs-model-version=123"
    assert got["content_type"] == "text/csv" and got["accept"] == "*/*"  # the raw header (requests sends */*)
    assert got["content_length"] == 3 and got["read"] == "abc" and got["read_type"] == "bytes"


BACKEND_FAILURE = """
    import os

    def input_handler(data, context):
        return '{"instances": ["not a number"]}'

    def output_handler(response, context):
        open(os.path.join(os.environ["MARKER_DIR"], "called"), "w").close()
        return "unreachable", "text/plain"
"""


def test_tf_42_backend_error_skips_output_handler(saved_models, tmp_path, serve):
    marker = tmp_path / "marker"
    marker.mkdir(mode=0o777)
    env = tf_env(MARKER_DIR=str(marker) if TARGET == "host" else "/tmp")
    server = serve(model_dir(saved_models, tmp_path, code={"inference.py": BACKEND_FAILURE}), env)
    response = server.post(data="[1]")
    assert response.status_code == 400, response.text
    assert "is not of expected type: float" in response.json()["error"]
    if TARGET == "host":
        assert not (marker / "called").exists()


DICT_INPUT = """
    def input_handler(data, context):
        return {"instances": [1.0, 2.0, 5.0]}
"""


def test_tf_43_input_handler_dict_is_sent_as_json(saved_models, tmp_path, serve):
    server = serve(model_dir(saved_models, tmp_path, code={"inference.py": DICT_INPUT}), tf_env())
    response = server.post(data="ignored")
    assert response.status_code == 200, response.text
    assert response.json() == {"predictions": [3.5, 4.0, 5.5]}


def test_tf_handler_without_any_handler_function_stops_startup(saved_models, tmp_path, serve):
    server = serve(model_dir(saved_models, tmp_path, code={"inference.py": "def predict_fn(x, m):\n    return x\n"}),
                   tf_env(), ready=False)
    code, logs = server.wait_failed_start()
    assert code != 0
    assert "inference.py defines none of handler" in logs


def test_tf_handler_with_wrong_arity_stops_startup(saved_models, tmp_path, serve):
    server = serve(model_dir(saved_models, tmp_path, code={"inference.py": "def handler(data):\n    return 1\n"}),
                   tf_env(), ready=False)
    code, logs = server.wait_failed_start()
    assert code != 0
    assert "handler takes 1 positional parameters; it must take exactly two" in logs


# ------------------------------------------------------------------ lib and requirements (§4)
PIL_PROBE = """
    import json

    def handler(data, context):
        try:
            import PIL
            found = True
        except ImportError:
            found = False
        try:
            import dummy_module
            dummy = dummy_module.VALUE
        except ImportError:
            dummy = None
        return json.dumps({"pil": found, "dummy": dummy}), "application/json"
"""


@pytest.mark.slow
def test_tf_38_requirements_install_pillow(saved_models, tmp_path, serve):
    server = serve(model_dir(saved_models, tmp_path, code={"inference.py": PIL_PROBE,
                                                           "requirements.txt": "Pillow==12.0.0\n"}),
                   tf_env(), timeout=240)
    assert server.post(data="{}").json() == {"pil": True, "dummy": None}


def test_tf_39_code_lib_skips_requirements(saved_models, tmp_path, serve):
    server = serve(model_dir(saved_models, tmp_path, code={"inference.py": PIL_PROBE,
                                                           "requirements.txt": "Pillow==12.0.0\n",
                                                           "lib/dummy_module/__init__.py": "VALUE = 7\n"}),
                   tf_env())
    assert server.post(data="{}").json() == {"pil": False, "dummy": 7}
    assert "is not installed" in server.logs() and "code/lib" in server.logs()


# ------------------------------------------------------------------ batching, instances, timeouts (§2, §10)
def test_tf_44_batching_lines_logged_once_each(saved_models, tmp_path, serve):
    server = serve(model_dir(saved_models, tmp_path), tf_env(
        SAGEMAKER_TFS_ENABLE_BATCHING="true", SAGEMAKER_TFS_MAX_BATCH_SIZE="16",
        SAGEMAKER_TFS_BATCH_TIMEOUT_MICROS="500", SAGEMAKER_TFS_NUM_BATCH_THREADS="100",
        SAGEMAKER_TFS_MAX_ENQUEUED_BATCHES="1"))
    logs = server.logs()
    for line in ("max_batch_size { value: 16 }", "batch_timeout_micros { value: 500 }",
                 "num_batch_threads { value: 100 }", "max_enqueued_batches { value: 1 }"):
        assert logs.count(line) == 1, (line, logs)
    assert predictions(server.post(data="[1.0]")) == [[3.5]]


def test_tf_45_batching_yes_is_a_startup_error(saved_models, tmp_path, serve):
    server = serve(model_dir(saved_models, tmp_path), tf_env(SAGEMAKER_TFS_ENABLE_BATCHING="yes"), ready=False)
    code, logs = server.wait_failed_start()
    assert code != 0 and "SAGEMAKER_TFS_ENABLE_BATCHING" in logs


def test_tf_46_concurrent_single_rows_with_batching_get_their_own_rows(saved_models, tmp_path, serve):
    server = serve(model_dir(saved_models, tmp_path), tf_env(SAGEMAKER_TFS_ENABLE_BATCHING="true",
                                                             SAGEMAKER_TFS_BATCH_TIMEOUT_MICROS="20000"))
    results: dict[int, object] = {}

    def call(i: int) -> None:
        results[i] = server.post(data=json.dumps({"instances": [float(i)]})).json()

    threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {i: {"predictions": [0.5 * i + 3]} for i in range(8)}


def test_tf_47_two_instances_both_receive_traffic(saved_models, tmp_path, serve):
    server = serve(model_dir(saved_models, tmp_path), tf_env(SAGEMAKER_TFS_INSTANCE_COUNT="2"))
    for _ in range(6):
        assert predictions(server.post(data="[1.0]")) == [[3.5]]
    assert len(set(server_rest_ports(server.logs()))) == 2
    server.signal(signal.SIGTERM)  # each built-in backend logs how many requests it answered when it stops
    assert server.wait_exit(60) == 0
    served = [int(n) for n in re.findall(r"backend served (\d+) inference requests", server.logs())]
    assert len(served) == 2 and all(n > 0 for n in served), server.logs()[-3000:]


def server_rest_ports(logs: str) -> list[str]:
    return re.findall(r"--rest_api_port=(\d+)", logs)


SLOW_HANDLER = """
    import time

    def handler(data, context):
        time.sleep(float(data.read() or 0))
        return "slept", "text/plain"
"""


@pytest.mark.slow
def test_tf_48_gunicorn_timeout_raises_the_deadline(saved_models, tmp_path, serve):
    server = serve(model_dir(saved_models, tmp_path, code={"inference.py": SLOW_HANDLER}),
                   tf_env(SAGEMAKER_GUNICORN_TIMEOUT_SECONDS="120"))
    response = server.post(data="90", content_type="text/plain", timeout=150)
    assert response.status_code == 200 and response.text == "slept"


def test_tf_62_builtin_backend_selected_and_tfs_required_fails(saved_models, tmp_path, serve):
    server = serve(model_dir(saved_models, tmp_path), tf_env())
    if shutil.which("tensorflow_model_server") is None:
        assert "backend: built-in" in server.logs()
        failed = serve(model_dir(saved_models, tmp_path / "b"), tf_env(SMSERVE_TF_BACKEND="tfs"), ready=False)
        code, logs = failed.wait_failed_start()
        assert code != 0 and "no tensorflow_model_server is on PATH" in logs


def test_tf_backend_killed_is_restarted_and_ping_recovers(saved_models, tmp_path, serve):
    if TARGET != "host":
        pytest.skip("finds the backend's pid on the host")
    server = serve(model_dir(saved_models, tmp_path), tf_env())
    out = subprocess.run(["pgrep", "-f", f"smserve_tensorflow.backend.*{server_rest_ports(server.logs())[0]}"],
                         capture_output=True, text=True)
    pids = [int(p) for p in out.stdout.split()]
    assert pids, server.logs()
    subprocess.run(["kill", "-9", *map(str, pids)], check=True)
    deadline = time.monotonic() + 60
    saw_503 = False
    while time.monotonic() < deadline:
        status = server.get("/ping").status_code
        saw_503 = saw_503 or status == 503
        if saw_503 and status == 200:
            break
        time.sleep(0.05)
    assert saw_503
    assert predictions(server.post(data="[1.0]")) == [[3.5]]
    assert "exited with status" in server.logs()


def test_tf_wait_time_bounds_the_backends_first_load(saved_models, tmp_path, serve):
    """§3: startup waits for every version on every instance, bounded by SAGEMAKER_TFS_WAIT_TIME_SECONDS when set
    (the built-in backend alone needs ~3 s to import TensorFlow, so 0.5 s cannot be met)."""
    server = serve(model_dir(saved_models, tmp_path), tf_env(SAGEMAKER_TFS_WAIT_TIME_SECONDS="0.5"), ready=False)
    code, logs = server.wait_failed_start(60)
    assert code == 1
    assert "tfs-0 did not serve every model within 0.5 s (SAGEMAKER_TFS_WAIT_TIME_SECONDS)" in logs


RESPONSE_PROBE = """
    import json
    import requests

    def input_handler(data, context):
        return data.read()

    def output_handler(response, context):
        try:
            response.raise_for_status()
            raised = None
        except requests.HTTPError as exc:
            raised = str(exc)
        return json.dumps({
            "type": type(response).__module__ + "." + type(response).__name__, "status": response.status_code,
            "ok": response.ok, "content_type": response.headers["content-type"], "json": response.json(),
            "text": response.text, "content": response.content.decode(), "raised": raised,
        }), "application/json"
"""


def test_tf_output_handler_gets_a_requests_response(saved_models, tmp_path, serve):
    """§4: `response` is a requests.Response with status_code, headers, content, text, ok, json(),
    raise_for_status(); output_handler sees only 200 answers (a backend error skips it, item 42)."""
    server = serve(model_dir(saved_models, tmp_path, code={"inference.py": RESPONSE_PROBE}), tf_env())
    got = server.post(data='{"instances": [1.0]}').json()
    assert got["type"] == "requests.models.Response" and got["status"] == 200 and got["ok"] is True
    assert got["content_type"].startswith("application/json") and got["raised"] is None
    assert got["json"] == {"predictions": [3.5]} and json.loads(got["text"]) == got["json"]
    assert got["content"] == got["text"]
