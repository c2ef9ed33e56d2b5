"""tensorflow.md §12 and §14 checklist items 49-61: the TensorFlow family's multi-model endpoint, answering as AWS's
TF image does (`{"success": ...}` bodies, `error` texts beside the core's error fields, model statuses from the
backends), one backend per loaded model on ports from SAGEMAKER_SAFE_PORT_RANGE's halves.

Every test sends real HTTP to a real front started with SAGEMAKER_MULTI_MODEL=true, which loads real SavedModels
(half_plus_three, half_plus_two) into model servers with their own backends. The models root is the folder handed
to the harness as "model dir" (the bind mount on the container target), and load urls are given as the server sees
them (test_core_mme.url_of). The test that kills a backend reads /proc and runs on the host target only.
"""

from __future__ import annotations

import json
import os
import re
import signal
import textwrap
from pathlib import Path

import pytest
import requests

from tests.contract.core_scripts import error
from tests.contract.test_core_mme import alive, in_parallel, load, path_of, start_mme, unload, url_of, wait_until
from tests.families import require_framework
from tests.harness import FAMILY, TARGET

require_framework("tensorflow")

import tf_models  # noqa: E402  (needs tensorflow)
from smserve_tensorflow import discovery  # noqa: E402
from test_tensorflow_contract import port_range  # noqa: E402

pytestmark = pytest.mark.skipif(FAMILY != "tensorflow",
                                reason="TensorFlow family suite: set SMSERVE_TEST_FAMILY=tensorflow")
LOADED = re.compile(r"Successfully loaded model (\S+), listening on rest port (\d+) and grpc port (\d+)\.")
ROWS = "[1, 2, 5]"
HALF_PLUS_THREE = [3.5, 4.0, 5.5]
HALF_PLUS_TWO = [2.5, 3.0, 4.5]

# input_handler passes the body on; output_handler tags the answer and reports AWS's multi-model context fields
TAGGING_HANDLERS = '''
import json


def input_handler(data, context):
    return data.read()


def output_handler(response, context):
    return json.dumps({"tag": %r, "model_name": context.model_name, "grpc_port": type(context.grpc_port).__name__,
                       "channel": context.channel, "predictions": response.json()["predictions"]}), "application/json"
'''


# ------------------------------------------------------------------------------------------------ helpers
def models_root(tmp_path_factory, name: str) -> Path:
    root = tmp_path_factory.mktemp(name)
    root.chmod(0o755)  # the container's user reads it
    return root


def write_handlers(folder: Path, tag: str) -> None:
    (folder / "code").mkdir(parents=True)
    (folder / "code" / "inference.py").write_text(textwrap.dedent(TAGGING_HANDLERS % tag))


def invoke(server, name: str, data: str = ROWS, content_type: str = "application/json") -> requests.Response:
    return requests.post(f"{server.url}/models/{path_of(name)}/invoke", data=data,
                         headers={"Content-Type": content_type}, timeout=60)


def predictions(response: requests.Response) -> list:
    assert response.status_code == 200, (response.status_code, response.text)
    return response.json()["predictions"]


def aws_error(response: requests.Response, status: int) -> str:
    """AWS's text, from an error body that also has the core's fields (core §11.1)."""
    return error(response, status)["error"]


def loaded_ports(response: requests.Response, name: str) -> tuple[int, int]:
    """(REST port, gRPC port) from AWS's success text of a load."""
    assert response.status_code == 200, (response.status_code, response.text)
    match = LOADED.fullmatch(response.json()["success"])
    assert match and match.group(1) == name, response.json()
    return int(match.group(2)), int(match.group(3))


def statuses(server) -> dict:
    response = requests.get(server.url + "/models", timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def available_versions(status: dict) -> set[str]:
    return {v["version"] for v in status["model_version_status"] if v["state"] == "AVAILABLE"}


def backend_pid(rest_port: int) -> int:
    """The backend process serving REST on `rest_port` (host target)."""
    wanted = (b"smserve_tensorflow.backend", f"--rest_api_port={rest_port}\0".encode())
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes() if entry.name.isdigit() else b""
        except OSError:
            continue
        if all(part in cmdline for part in wanted):
            return int(entry.name)
    raise AssertionError(f"no backend process serves REST on port {rest_port}")


# ------------------------------------------------------------------------------------------------ endpoints
@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """The models root of the endpoints without universal code: both test models, a folder holding only `abcde/`,
    the wrapper layout `wrapper/half_plus_three/<versions>`, and a model whose SavedModel is corrupt."""
    folder = models_root(tmp_path_factory, "tf-mme")
    tf_models.half_plus_three(folder)
    tf_models.half_plus_two(folder)
    (folder / "abcde-only" / "abcde").mkdir(parents=True)
    tf_models.half_plus_three(folder / "wrapper")
    (folder / "corrupt" / "1").mkdir(parents=True)
    (folder / "corrupt" / "1" / "saved_model.pb").write_bytes(b"not a SavedModel")
    return folder


@pytest.fixture(scope="module")
def idle(module_servers, root):
    """An endpoint on which no load succeeds: every answer of an empty endpoint."""
    return start_mme(module_servers, root)


@pytest.fixture(scope="module")
def pair(module_servers, root):
    """An endpoint with half_plus_three loaded as `three` and half_plus_two as `two` (names other than the folders':
    each backend serves its model under the name it was loaded as)."""
    server = start_mme(module_servers, root)
    in_parallel(lambda: loaded_ports(load(server, "three", root / "half_plus_three"), "three"),
                lambda: loaded_ports(load(server, "two", root / "half_plus_two"), "two"))
    return server


# ------------------------------------------------------------------------------------------------ checklist
def test_tf_49_ping_200_and_invoke_before_load_404(idle):
    """tensorflow.md §14 item 49: /ping 200 with nothing loaded; an invoke before the load answers 404
    `Model half_plus_three is not loaded yet.`"""
    assert requests.get(idle.url + "/ping", timeout=10).status_code == 200
    assert aws_error(invoke(idle, "half_plus_three"), 404) == "Model half_plus_three is not loaded yet."


def test_tf_50_list_is_empty_object(idle):
    """tensorflow.md §14 item 50: GET /models answers {} when nothing is loaded."""
    assert statuses(idle) == {}


def test_tf_51_delete_of_unknown_model_404(idle):
    """tensorflow.md §14 item 51: DELETE /models/non-existing-model → 404 containing `is not loaded yet`."""
    text = aws_error(requests.delete(idle.url + "/models/non-existing-model", timeout=30), 404)
    assert text == "Model non-existing-model is not loaded yet", text
    assert aws_error(requests.get(idle.url + "/models/non-existing-model", timeout=30), 404) == \
        "Model non-existing-model is not loaded yet."


def test_tf_52_load_invoke_delete_invoke(serve, root):
    """tensorflow.md §14 item 52: load half_plus_two → 200 `Successfully loaded model half_plus_two`; invoke →
    [2.5, 3.0, 4.5]; delete → 200; invoke → 404."""
    server = start_mme(serve, root)
    loaded_ports(load(server, "half_plus_two", root / "half_plus_two"), "half_plus_two")
    assert predictions(invoke(server, "half_plus_two")) == [HALF_PLUS_TWO]
    deleted = unload(server, "half_plus_two")
    assert deleted.status_code == 200, deleted.text
    assert deleted.json() == {"success": "Successfully unloaded model half_plus_two."}
    assert aws_error(invoke(server, "half_plus_two"), 404) == "Model half_plus_two is not loaded yet."
    assert statuses(server) == {}


def test_tf_53_two_models_answer_their_own_values_and_are_listed(pair):
    """tensorflow.md §14 item 53: two models loaded, each answers its own values; GET /models has 2 entries, each
    its backend's status (GET /models/N: {"model": status})."""
    assert predictions(invoke(pair, "three")) == [HALF_PLUS_THREE]
    assert predictions(invoke(pair, "two")) == [HALF_PLUS_TWO]
    listed = statuses(pair)
    assert set(listed) == {"three", "two"}, listed
    assert available_versions(listed["three"]) == {"123", "124"}, listed
    assert available_versions(listed["two"]) == {"123"}, listed
    described = requests.get(pair.url + "/models/three", timeout=30)
    assert described.status_code == 200 and described.json() == {"model": listed["three"]}, described.text


def test_tf_54_second_load_of_a_name_409(pair, root):
    """tensorflow.md §14 item 54: loading a loaded name again → 409 `Model <name> is already loaded.`; the loaded
    model keeps serving."""
    assert aws_error(load(pair, "three", root / "half_plus_two"), 409) == "Model three is already loaded."
    assert predictions(invoke(pair, "three")) == [HALF_PLUS_THREE]


def test_tf_55_missing_url_404_base_path(idle, root):
    """tensorflow.md §14 item 55: a url that does not exist → 404 `Could not find valid base path ...`."""
    url = url_of(idle, root / "non-existing")
    assert aws_error(load(idle, "ghost", url), 404) == f"Could not find valid base path {url} for servable ghost"


def test_tf_56_uri_instead_of_url_400(idle, root):
    """tensorflow.md §14 item 56: a load body with `uri` instead of `url` → 400 (AWS: 500)."""
    body = json.dumps({"model_name": "half_plus_two", "uri": url_of(idle, root / "half_plus_two")})
    response = requests.post(idle.url + "/models", data=body, headers={"Content-Type": "application/json"},
                             timeout=30)
    assert "url" in aws_error(response, 400)
    assert statuses(idle) == {}


def test_tf_57_folder_without_savedmodel_404_base_path(idle, root):
    """tensorflow.md §14 item 57: a model folder holding only `abcde/` → 404 `Could not find valid base path ...`."""
    url = url_of(idle, root / "abcde-only")
    assert aws_error(load(idle, "abcde", url), 404) == f"Could not find valid base path {url} for servable abcde"


def test_tf_58_wrapper_layout_loads_with_a_warning(serve, root):
    """tensorflow.md §14 item 58 (§12 model layout): url/half_plus_three/<versions> loads, with a warning naming
    the base path used, and serves every version under the load's name."""
    server = start_mme(serve, root)
    loaded_ports(load(server, "wrapped", root / "wrapper"), "wrapped")
    assert predictions(invoke(server, "wrapped")) == [HALF_PLUS_THREE]
    warnings = [line for line in server.logs().splitlines() if "has no version directories of its own" in line]
    assert len(warnings) == 1 and "half_plus_three" in warnings[0], server.logs()
    assert available_versions(statuses(server)["wrapped"]) == {"123", "124"}


@pytest.mark.slow
def test_tf_59_per_model_and_universal_scripts_each_serve_their_model(serve, tmp_path_factory):
    """tensorflow.md §14 item 59 (§12 handler choice): a model's own code/inference.py serves it; the universal
    <models root>/code/inference.py serves the model without one. Both see AWS's multi-model context: the model's
    name, an int gRPC port, no channel (§5)."""
    folder = models_root(tmp_path_factory, "tf-mme-universal")
    write_handlers(folder, "universal")
    tf_models.half_plus_three(folder)
    own = Path(tf_models.half_plus_two(folder))
    write_handlers(own, "per-model")
    server = start_mme(serve, folder)
    in_parallel(lambda: loaded_ports(load(server, "bare", folder / "half_plus_three"), "bare"),
                lambda: loaded_ports(load(server, "own", own), "own"))
    for name, tag, values in (("bare", "universal", HALF_PLUS_THREE), ("own", "per-model", HALF_PLUS_TWO)):
        response = invoke(server, name, '{"instances": [1, 2, 5]}')  # input_handler passes it on as it is
        assert response.status_code == 200, response.text
        assert response.json() == {"tag": tag, "model_name": name, "grpc_port": "int", "channel": None,
                                   "predictions": values}


def test_tf_60_model_without_script_converts_csv(pair):
    """tensorflow.md §14 item 60: a model without any script accepts CSV `1.0,2.0,5.0` (default conversion, §7)."""
    assert predictions(invoke(pair, "two", "1.0,2.0,5.0", "text/csv")) == [HALF_PLUS_TWO]


@pytest.mark.slow
@pytest.mark.skipif(TARGET != "host", reason="finds and kills the backend process on the host")
def test_tf_61_killed_backend_next_invoke_404_then_reload_works(serve, root):
    """tensorflow.md §14 item 61 (§12): a model whose backend died is not restarted: its next invoke answers 404,
    the model leaves GET /models, and loading it again serves it."""
    server = start_mme(serve, root)
    rest_port, _ = loaded_ports(load(server, "doomed", root / "half_plus_two"), "doomed")
    assert predictions(invoke(server, "doomed")) == [HALF_PLUS_TWO]
    backend = backend_pid(rest_port)
    os.kill(backend, signal.SIGKILL)
    wait_until(lambda: not alive(backend), 10, "the killed backend is gone")
    assert aws_error(invoke(server, "doomed"), 404) == "Model doomed is not loaded yet."
    wait_until(lambda: statuses(server) == {}, 30, "the model is unregistered")
    loaded_ports(load(server, "doomed", root / "half_plus_two"), "doomed")
    assert predictions(invoke(server, "doomed")) == [HALF_PLUS_TWO]


# ------------------------------------------------------------------------------------------------ beyond the list
@pytest.mark.slow
def test_tf_mme_port_range_halves_507_when_full_and_a_failed_load_keeps_no_ports(serve, root):
    """tensorflow.md §12 ports (as item 47 for single mode): with SAGEMAKER_SAFE_PORT_RANGE lo-hi, REST ports come
    from the lower half and gRPC ports from the upper half of lo .. lo + int(0.9 × (hi − lo)); a load that fails
    frees its ports at once; with no free pair left a load answers 507 with AWS's text."""
    low, high = (int(p) for p in port_range(5).split("-"))  # REST lo, lo+1; gRPC lo+2, lo+3: room for two models
    server = start_mme(serve, root, {"SAGEMAKER_SAFE_PORT_RANGE": f"{low}-{high}"})
    assert loaded_ports(load(server, "first", root / "half_plus_two"), "first") == (low, low + 2)
    failed = error(load(server, "corrupt", root / "corrupt"), 500)
    assert "corrupt" in failed["message"], failed
    assert loaded_ports(load(server, "second", root / "half_plus_three"), "second") == (low + 1, low + 3)
    assert aws_error(load(server, "third", root / "half_plus_two"), 507) == \
        "Memory exhausted: no available ports to load the model."
    assert predictions(invoke(server, "first")) == [HALF_PLUS_TWO]
    assert predictions(invoke(server, "second")) == [HALF_PLUS_THREE]


def test_tf_mme_port_halves_are_aws_split_of_the_range():
    """tensorflow.md §12: 9000-9999 gives REST ports 9000-9448 and gRPC ports 9449-9898 (449 models, AWS's split);
    the ports reach a model's server as `<rest>:<grpc>` pairs and are read back unchanged."""
    rest, grpc = discovery.multi_model_port_halves("9000-9999")
    assert (rest.start, rest.stop, grpc.start, grpc.stop) == (9000, 9449, 9449, 9899)
    instances = (discovery.Instance(grpc_port=9449, rest_port=9000), discovery.Instance(grpc_port=9450, rest_port=9001))
    assert discovery.backend_ports_text(instances) == "9000:9449,9001:9450"
    assert discovery.parse_backend_ports("9000:9449,9001:9450") == instances


def test_tf_mme_invalid_model_name_400(idle, root):
    """tensorflow.md §12: a name TF Serving cannot serve → 400 `invalid model_name: '...'`."""
    assert aws_error(load(idle, "two words", root / "half_plus_two"), 400) == "invalid model_name: 'two words'"


def test_tf_mme_invocations_without_model_name_400(idle):
    """tensorflow.md §12: POST /invocations without a model name → 400 with AWS's text."""
    response = requests.post(idle.url + "/invocations", data=ROWS, headers={"Content-Type": "application/json"},
                             timeout=30)
    assert aws_error(response, 400) == "Invocation request does not contain model name."
