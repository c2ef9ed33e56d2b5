"""core.md §7 (hooks, the context-by-arity rule, transform_fn exclusivity, lifecycle) and §21 checklist items
46–52.

Hooks append what happened to a record file named by TEST_RECORD (a path on the machine that runs the server);
the scripts' transform_fn / output_fn send it back, so the tests read it over HTTP.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import requests

from ..harness import FAMILY, served_path
from ..models import make_dir, write_code

LIFECYCLE = '''
import json
import os
import time

RECORD = os.environ["TEST_RECORD"]


def _record(*words):
    with open(RECORD, "a") as f:
        f.write(" ".join(str(w) for w in (os.getpid(), time.monotonic_ns(), *words)) + "\\n")


def pre_model_fn(model_dir):
    _record("pre_model_fn", model_dir)


def model_fn(model_dir):
    _record("model_fn", model_dir)
    return f"model-of-{os.getpid()}"


def model_warmup_fn(model_dir, model):
    _record("model_warmup_fn", model_dir, model)


def transform_fn(model, body, content_type, accept):
    with open(RECORD) as f:
        lines = f.read().splitlines()
    return json.dumps({"pid": os.getpid(), "model": model, "records": lines}), "application/json"
'''

ARITY = '''
import json
import os


def model_fn(model_dir, context):
    return {"model_dir": model_dir, "context_type": type(context).__name__,
            "context_model_dir": context.system_properties.get("model_dir"),
            "server_name": context.system_properties.get("server_name"), "model_name": context.model_name}


def input_fn(body, content_type, extra=None):
    return {"body": body if isinstance(body, str) else body.decode(), "content_type": content_type,
            "extra_type": type(extra).__name__,
            "request_id": extra.get_request_id(0) if extra is not None else None,
            "header": extra.get_request_header(0, "x-test-header") if extra is not None else None}


def predict_fn(*args):
    return {"nargs": len(args), "data": args[0], "model": args[1]}


def output_fn(prediction, accept):
    return json.dumps(prediction), "application/json"
'''

BAD_OUTPUT_FN = '''
import json


def model_fn(model_dir):
    return "bad"


def output_fn(pred, accept, a, b):
    return json.dumps(pred)
'''

TRANSFORM_AND_INPUT = '''
import json


def model_fn(model_dir):
    return "conflict"


def input_fn(body, content_type):
    return body


def transform_fn(model, body, content_type, accept):
    return json.dumps(body)
'''


def startup_failure(serve, model_dir: Path, env: dict, timeout: float = 60) -> tuple[int, str]:
    return serve(model_dir, env, ready=False).wait_failed_start(timeout)


@pytest.fixture(scope="module")
def lifecycle_server(module_servers, tmp_path_factory):
    model_dir = make_dir(tmp_path_factory.mktemp("lifecycle"))
    write_code(model_dir, LIFECYCLE)
    server = module_servers(model_dir, {"SAGEMAKER_MODEL_SERVER_WORKERS": "2",
                                        "TEST_RECORD": f"/tmp/smserve-hooks-{uuid.uuid4().hex}.txt"})
    return server


def lifecycle_records(server) -> list[list[str]]:
    """Every record line, after a few requests spread over the workers on fresh connections."""
    body = None
    for _ in range(6):
        response = requests.post(server.url + "/invocations", data="{}", headers={"Content-Type": "application/json"},
                                 timeout=30)
        assert response.status_code == 200, response.text
        body = response.json()
    return [line.split() for line in body["records"]]


def test_core_46_model_fn_once_per_worker(lifecycle_server):
    """core §21 item 46 (§7.1, §7.4): model_fn runs exactly once per worker process: 2 workers → 2 calls in
    total, one in each worker, however many requests were served."""
    records = lifecycle_records(lifecycle_server)
    calls = [r for r in records if r[2] == "model_fn"]
    assert len(calls) == 2, records
    assert len({r[0] for r in calls}) == 2
    assert all(Path(r[3]).resolve() == lifecycle_server.served_model_dir for r in calls)


def test_core_47_pre_model_fn_before_model_fn_warmup_after_with_model(lifecycle_server):
    """core §21 item 47 (§7.1, §7.4): in each worker pre_model_fn runs before model_fn, and model_warmup_fn
    after it, receiving the model model_fn returned; each runs once per worker."""
    records = lifecycle_records(lifecycle_server)
    pids = {r[0] for r in records}
    assert len(pids) == 2
    for pid in pids:
        mine = [r for r in records if r[0] == pid]
        assert [r[2] for r in mine] == ["pre_model_fn", "model_fn", "model_warmup_fn"], mine
        times = [int(r[1]) for r in mine]
        assert times == sorted(times)
        assert mine[2][4] == f"model-of-{pid}"


@pytest.fixture(scope="module")
def arity_server(module_servers, tmp_path_factory):
    model_dir = make_dir(tmp_path_factory.mktemp("arity"))
    write_code(model_dir, ARITY)
    server = module_servers(model_dir, {"SAGEMAKER_MODEL_SERVER_WORKERS": "1"})
    return server


def arity_result(server, **headers) -> dict:
    response = server.post(data='{"x": 1}', headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.skipif(FAMILY not in ("pytorch", "mxnet"), reason=f"no arity expectation for family {FAMILY}")
def test_core_48_model_fn_context_by_arity(arity_server, lifecycle_server):
    """core §21 item 48 (§7.2): model_fn(model_dir, context) receives a context (with system_properties and
    model_name); model_fn(model_dir) is called with the model dir alone. The MXNet refinement (mxnet.md §7)
    gives the same answer here: the extra `context` parameter has no default."""
    model = arity_result(arity_server)["model"]
    assert model["context_type"] == "Context"
    assert Path(model["model_dir"]).resolve() == arity_server.served_model_dir
    assert Path(model["context_model_dir"]).resolve() == arity_server.served_model_dir
    assert model["server_name"] == "smserve" and model["model_name"] == "model"
    # the one-parameter model_fn of the other server loaded (it would raise TypeError if given a context)
    calls = [r for r in lifecycle_records(lifecycle_server) if r[2] == "model_fn"]
    assert len(calls) == 2


@pytest.mark.skipif(FAMILY not in ("pytorch", "mxnet"), reason=f"no arity expectation for family {FAMILY}")
def test_core_49_defaulted_extra_parameter_receives_context(arity_server):
    """core §21 item 49 (§7.2): PyTorch family: input_fn(body, ct, extra=None) receives the context as
    `extra` (AWS arity rule; a defaulted parameter still counts). MXNet family (mxnet.md §7, which narrows
    §7.2): an extra parameter with a default gets no context, so `extra` keeps None (mxnet.md §11 item 14)."""
    data = arity_result(arity_server, **{"X-Amzn-SageMaker-Inference-Id": "arity-49", "X-Test-Header": "seen"})["data"]
    if FAMILY == "mxnet":
        assert (data["extra_type"], data["request_id"], data["header"]) == ("NoneType", None, None), data
    else:
        assert data["extra_type"] == "Context"
        assert data["request_id"] == "arity-49"
        assert data["header"] == "seen"
    assert data["body"] == '{"x": 1}' and data["content_type"] == "application/json"


def test_core_50_varargs_predict_fn_called_with_two_arguments(arity_server):
    """core §21 item 50 (§7.2): predict_fn(*args) is called with exactly two arguments (data, model)
    [smserve improvement: AWS fails on it]."""
    result = arity_result(arity_server)
    assert result["nargs"] == 2
    assert result["data"]["body"] == '{"x": 1}'
    assert result["model"]["model_name"] == "model"


def test_core_51_bad_hook_signature_is_a_startup_error(serve, tmp_path):
    """core §21 item 51 (§7.2, §5.4): output_fn(pred, accept, a, b) → startup error (exit 1) naming the file,
    the function and its signature, and the accepted signatures."""
    model_dir = make_dir(tmp_path)
    script = write_code(model_dir, BAD_OUTPUT_FN)
    status, logs = startup_failure(serve, model_dir, {"SAGEMAKER_MODEL_SERVER_WORKERS": "1"})
    assert status == 1, logs
    lines = [line for line in logs.splitlines() if "output_fn(pred, accept, a, b)" in line]
    assert lines, logs
    line = lines[0]
    assert str(served_path(model_dir, script)) in line, line
    assert "output_fn(prediction, accept)" in line and "output_fn(prediction, accept, context)" in line


def test_core_52_transform_fn_with_input_fn_is_a_startup_error(serve, tmp_path):
    """core §21 item 52 (§7.3, §5.4): transform_fn + input_fn in one module → startup error (exit 1) naming
    both functions and the file."""
    model_dir = make_dir(tmp_path)
    script = write_code(model_dir, TRANSFORM_AND_INPUT)
    status, logs = startup_failure(serve, model_dir, {"SAGEMAKER_MODEL_SERVER_WORKERS": "1"})
    assert status == 1, logs
    lines = [line for line in logs.splitlines() if "transform_fn" in line and "input_fn" in line]
    assert lines, logs
    assert str(served_path(model_dir, script)) in lines[0], lines[0]
