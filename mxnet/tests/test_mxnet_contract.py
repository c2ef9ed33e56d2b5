"""mxnet.md §11 checklist: the MXNet family defaults against real mxnet 1.9.1 models (Gluon HybridBlocks
exported to symbol/params with a shapes file, Gluon models loaded by a user model_fn, transform_fn scripts).

Run in the mxnet venv: make test-mxnet-host (or SMSERVE_TEST_FAMILY=mxnet .venv/mxnet/bin/python -m pytest mxnet/tests)
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import time

import numpy as np
import pytest
import requests

from tests.families import require_framework
from tests.harness import CONTAINER_MODEL_DIR, FAMILY, IMAGE, TARGET
from tests.models import from_npy, make_dir, npy, write_code

mx = require_framework("mxnet")

from mxnet_models import (IN_UNITS, export_checkpoint, gluon_with_code, module_predict,  # noqa: E402  (needs mxnet)
                          two_heads, two_inputs)

pytestmark = pytest.mark.skipif(FAMILY != "mxnet", reason="MXNet family suite: set SMSERVE_TEST_FAMILY=mxnet")

JSON, CSV, NPY, NPZ = "application/json", "text/csv", "application/x-npy", "application/x-npz"
ONE_WORKER = {"SAGEMAKER_MODEL_SERVER_WORKERS": "1"}
ROWS = np.arange(9 * IN_UNITS, dtype=np.float32).reshape(9, IN_UNITS) / 10.0


def npz(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def csv_rows(array: np.ndarray) -> str:
    return "\n".join(",".join(repr(float(v)) for v in row) for row in array) + "\n"


def ok(response: requests.Response) -> requests.Response:
    assert response.status_code == 200, response.text
    return response


# ---------------------------------------------------------------- servers shared by several items

@pytest.fixture(scope="module")
def case_a(module_servers, tmp_path_factory):
    """Case A: model-symbol.json, model-0000.params, model-shapes.json and no code/ at all."""
    model_dir = make_dir(tmp_path_factory.mktemp("case_a"))
    export_checkpoint(model_dir)
    server = module_servers(model_dir, ONE_WORKER)
    server.checkpoint = model_dir
    return server


PROBE_PREDICT = '''
import mxnet as mx


def predict_fn(data, model):
    """Reports what the default Module input_fn built (an NDArrayIter) instead of predicting."""
    array = data.data[0][1]
    return {"type": type(data).__name__, "dtype": str(array.dtype.__name__), "shape": list(array.shape),
            "batch_size": data.batch_size, "provide_data": [[d.name, list(d.shape)] for d in data.provide_data]}
'''


@pytest.fixture(scope="module")
def probe(module_servers, tmp_path_factory):
    model_dir = make_dir(tmp_path_factory.mktemp("probe"))
    export_checkpoint(model_dir)
    write_code(model_dir, PROBE_PREDICT)
    return module_servers(model_dir, ONE_WORKER)


TRANSFORM_REPORT = '''
import json
import os
import time

import mxnet as mx

from smserve import resources


def transform_fn(model, body, content_type, accept):
    """Case D: default model_fn + user transform_fn reporting the worker's view (or sleeping)."""
    if body == "sleep" or body == b"sleep":
        time.sleep(3)
        return "slept"
    report = {
        "pid": os.getpid(),
        "model_type": type(model).__name__,
        "model_context": [str(c) for c in model._context],
        "num_gpus": mx.context.num_gpus(),
        "cpus": resources.available_cpus(),
        "env": {name: os.environ.get(name) for name in (
            "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MXNET_CPU_WORKER_NTHREADS",
            "MXNET_CPU_PRIORITY_NTHREADS", "MXNET_KVSTORE_REDUCTION_NTHREADS")},
        "result": model.predict(mx.io.NDArrayIter(mx.nd.array(json.loads(body)), batch_size=1)).asnumpy().tolist()
        if content_type == "application/json" else None,
    }
    return json.dumps(report), "application/json"
'''


@pytest.fixture(scope="module")
def transform_two_workers(module_servers, tmp_path_factory):
    model_dir = make_dir(tmp_path_factory.mktemp("transform"))
    export_checkpoint(model_dir)
    write_code(model_dir, TRANSFORM_REPORT)
    return module_servers(model_dir, {"SAGEMAKER_MODEL_SERVER_WORKERS": "2", "SAGEMAKER_MODEL_SERVER_TIMEOUT": "2"})


CLOSE = {"Connection": "close"}  # a new connection per request, so that every worker gets some


def reports(server, count: int = 12) -> list[dict]:
    return [ok(server.post(data=json.dumps([[1, 2, 3, 4]]), headers=CLOSE)).json() for _ in range(count)]


@pytest.fixture(scope="module")
def gluon_server(module_servers, tmp_path_factory):
    """Case C: model.params + code/inference.py with model_fn building the net; Gluon defaults for I/O."""
    model_dir = make_dir(tmp_path_factory.mktemp("gluon"))
    net = gluon_with_code(model_dir)
    server = module_servers(model_dir, ONE_WORKER)
    server.net = net
    return server


# ---------------------------------------------------------------- §1 environment

def test_mxnet_1_import_mxnet_numpy_1_23_5():
    """mxnet.md §11 item 1: `import mxnet` succeeds in the image (or host venv) and numpy is 1.23.5."""
    code = "import mxnet, numpy; print(mxnet.__version__, numpy.__version__)"
    if TARGET == "container":
        out = subprocess.run(["docker", "run", "--rm", IMAGE, "python", "-c", code], capture_output=True,
                             text=True, timeout=120)
    else:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-2:] == ["1.9.1", "1.23.5"]


def test_mxnet_2_requirements_numpy_1_26_names_mxnet_pin(serve, tmp_path):
    """mxnet.md §11 item 2: code/requirements.txt asking for numpy>=1.26 fails, naming the MXNet numpy pin."""
    model_dir = make_dir(tmp_path)
    export_checkpoint(model_dir)
    write_code(model_dir, "numpy>=1.26\n", name="requirements.txt")
    # no index: pip decides from the constraint alone (and never reaches the network)
    server = serve(model_dir, {**ONE_WORKER, "PIP_NO_INDEX": "1"}, ready=False)
    status = server.wait_exit(240)
    logs = server.logs()
    assert status == 3, logs
    assert "numpy==1.23.5" in logs and "MXNet" in logs and "mxnet 1.9.1" in logs, logs[-3000:]


# ---------------------------------------------------------------- §3 default model_fn

def test_mxnet_3_case_a_serves_json_without_code_dir(case_a):
    """mxnet.md §11 item 3 (§9 case A): symbol + params + shapes serve JSON with no code/ directory."""
    assert not (case_a.checkpoint / "code").exists()
    result = case_a.invoke_json(ROWS[:2].tolist())
    assert np.asarray(result).shape == (2, 3)
    assert "using MXNet defaults" in case_a.logs()


def test_mxnet_4_case_a_equals_local_module_predict(case_a):
    """mxnet.md §11 item 4: the case A result equals Module.predict run locally on the same input."""
    result = np.asarray(case_a.invoke_json(ROWS.tolist()))
    expected = module_predict(case_a.checkpoint, ROWS)
    np.testing.assert_allclose(result, expected, rtol=1e-6, atol=1e-7)


def test_mxnet_5_case_b_no_shapes_symbolblock(serve, tmp_path):
    """mxnet.md §11 item 5 (§3, §9 case B): without model-shapes.json the export serves through SymbolBlock."""
    model_dir = make_dir(tmp_path)
    net = export_checkpoint(model_dir, shapes=False)
    server = serve(model_dir, ONE_WORKER)
    result = np.asarray(server.invoke_json(ROWS[:3].tolist()))
    np.testing.assert_allclose(result, net(mx.nd.array(ROWS[:3])).asnumpy(), rtol=1e-6, atol=1e-7)
    assert "SymbolBlock" in server.logs()
    # Gluon defaults: CSV and NPY work as well
    body = ok(server.post(data=csv_rows(ROWS[:2]), content_type=CSV, accept=NPY)).content
    np.testing.assert_allclose(from_npy(body), result[:2], rtol=1e-6)


def test_mxnet_6_missing_params_lists_expected_files(serve, tmp_path):
    """mxnet.md §11 item 6: missing model-0000.params → startup error listing the three expected files."""
    model_dir = make_dir(tmp_path)
    export_checkpoint(model_dir)
    (model_dir / "model-0000.params").unlink()
    server = serve(model_dir, ONE_WORKER, ready=False)
    status = server.wait_exit(90)
    logs = server.logs()
    assert status != 0
    assert "Failed to load model with default model_fn: missing file model-0000.params" in logs, logs[-3000:]
    for name in ("model-symbol.json", "model-0000.params", "model-shapes.json"):
        assert name in logs


def test_mxnet_7_model_fn_once_per_worker(serve, tmp_path):
    """mxnet.md §11 item 7 (§3): a counting user model_fn wrapper is called once per worker process."""
    model_dir = make_dir(tmp_path)
    export_checkpoint(model_dir)
    write_code(model_dir, '''
        import os

        import mxnet as mx

        CALLS = {"model_fn": 0}


        def model_fn(model_dir):
            CALLS["model_fn"] += 1
            sym, args, aux = mx.model.load_checkpoint(os.path.join(model_dir, "model"), 0)
            module = mx.mod.Module(sym, context=mx.cpu(), data_names=["data"], label_names=None)
            module.bind(for_training=False, data_shapes=[("data", (1, 4))])
            module.set_params(args, aux, allow_missing=True)
            return module


        def output_fn(prediction, accept):
            return {"pid": os.getpid(), "calls": CALLS["model_fn"], "rows": len(prediction.asnumpy())}
    ''')
    server = serve(model_dir, {"SAGEMAKER_MODEL_SERVER_WORKERS": "2"})
    seen = {}
    for _ in range(60):
        result = ok(server.post(data="[[1,2,3,4]]", headers=CLOSE)).json()
        seen[result["pid"]] = result["calls"]
        if len(seen) == 2:
            break
    assert seen and set(seen.values()) == {1}, seen
    assert len(seen) == 2, "both workers should answer"


def test_mxnet_8_default_module_context(transform_two_workers):
    """mxnet.md §11 item 8 (§3): the default Module is bound to mx.gpu(0) on a GPU host, else mx.cpu()."""
    for report in reports(transform_two_workers, 4):
        assert report["model_type"] == "Module"
        expected = ["gpu(0)"] if report["num_gpus"] > 0 else ["cpu(0)"]
        assert report["model_context"] == expected


def test_mxnet_8_worker_context_rule(monkeypatch):
    """mxnet.md §11 item 8, the GPU half without a GPU: the default context is mx.gpu(0) whenever mxnet
    reports a GPU (the first one of the worker's pinned set), mx.cpu() otherwise."""
    from smserve_mxnet import defaults

    monkeypatch.setattr(mx.context, "num_gpus", lambda: 2)
    assert defaults.worker_context() == mx.gpu(0)
    monkeypatch.setattr(mx.context, "num_gpus", lambda: 0)
    assert defaults.worker_context() == mx.cpu()

    def no_driver():
        raise mx.base.MXNetError("CUDA: no driver")
    monkeypatch.setattr(mx.context, "num_gpus", no_driver)
    assert defaults.worker_context() == mx.cpu()


# ---------------------------------------------------------------- §4 Module defaults

def test_mxnet_9_json_int_reaches_model_as_float32(probe):
    """mxnet.md §11 item 9 (§4.1): JSON integers reach the model as float32."""
    report = ok(probe.post(data="[[1, 2, 3, 4]]")).json()
    assert report["type"] == "OrderedNDArrayIter" and report["dtype"] == "float32"
    report = ok(probe.post(data=npy(np.array([[1, 2, 3, 4]], dtype=np.int64)), content_type=NPY)).json()
    assert report["dtype"] == "float32"


def test_mxnet_10_csv_one_row_reshaped_to_data_shape(probe):
    """mxnet.md §11 item 10 (§4.1): CSV `1,2,3,4` for data shape (1, 4) reaches the model as (1, 4)."""
    report = ok(probe.post(data="1,2,3,4", content_type=CSV)).json()
    assert report["shape"] == [1, 4]
    assert report["provide_data"] == [["data", [1, 4]]]


def test_mxnet_10_structured_csv_and_jsonlines_to_module(probe, case_a):
    """mxnet.md §4.1: a CSV row mixing ints and floats (a structured genfromtxt result) becomes a plain float
    row; application/jsonlines is decoded like JSON [smserve improvements]; an empty list is 400."""
    report = ok(probe.post(data="1,2.5,3,4", content_type=CSV)).json()
    assert report["shape"] == [1, 4] and report["dtype"] == "float32"
    lines = "\n".join(json.dumps(row) for row in ROWS[:3].tolist())
    result = ok(case_a.post(data=lines, content_type="application/jsonlines")).json()
    np.testing.assert_allclose(result, case_a.invoke_json(ROWS[:3].tolist()), rtol=1e-6)
    assert case_a.post(data="[]").status_code == 400


def test_mxnet_case_e_nested_directory_descended(serve, tmp_path):
    """mxnet.md §9 case E: export/model-symbol.json, … is descended into with a warning."""
    root = make_dir(tmp_path)
    export_checkpoint(make_dir(root, "export"))
    server = serve(root, ONE_WORKER)
    assert np.asarray(server.invoke_json([[1, 2, 3, 4]])).shape == (1, 3)
    assert "export" in server.logs() and "tar -C" in server.logs()


def test_mxnet_11_csv_two_rows_two_results(case_a):
    """mxnet.md §11 item 11: CSV with two rows for data shape (1, 4) returns two result rows."""
    result = ok(case_a.post(data="1,2,3,4\n5,6,7,8\n", content_type=CSV)).json()
    assert np.asarray(result).shape == (2, 3)
    np.testing.assert_allclose(result, case_a.invoke_json([[1, 2, 3, 4], [5, 6, 7, 8]]), rtol=1e-6)


def test_mxnet_12_batch_dimension_padding_every_row(case_a, module_servers):
    """mxnet.md §11 item 12 (§4.2): with SAGEMAKER_DEFAULT_MODEL_FIRST_DIMENSION_SIZE=4, n = 4, 5 and 9 rows
    return 4, 5 and 9 rows, equal to the B = 1 results (AWS: 500, 2 rows, 3 rows)."""
    b4 = module_servers(case_a.checkpoint, {**ONE_WORKER, "SAGEMAKER_DEFAULT_MODEL_FIRST_DIMENSION_SIZE": "4"})
    assert "'data': (4, 4)" in b4.logs()
    for n in (1, 3, 4, 5, 8, 9):
        rows = ROWS[:n].tolist()
        got = np.asarray(b4.invoke_json(rows))
        assert got.shape == (n, 3), n
        np.testing.assert_allclose(got, case_a.invoke_json(rows), rtol=1e-6, atol=1e-7)
    got = ok(b4.post(data=csv_rows(ROWS[:5]), content_type=CSV, accept=CSV)).text
    assert len(got.splitlines()) == 5


def test_mxnet_12_invalid_batch_size_variable(serve, tmp_path):
    """mxnet.md §3 / core §1.2: SAGEMAKER_DEFAULT_MODEL_FIRST_DIMENSION_SIZE=0 stops startup with status 2."""
    model_dir = make_dir(tmp_path)
    export_checkpoint(model_dir)
    server = serve(model_dir, {"SAGEMAKER_DEFAULT_MODEL_FIRST_DIMENSION_SIZE": "0"}, ready=False)
    assert server.wait_exit(60) == 2
    assert "SAGEMAKER_DEFAULT_MODEL_FIRST_DIMENSION_SIZE" in server.logs()


MODEL_KEYWORD_HOOKS = '''
import mxnet as mx


def input_fn(data, content_type, model):
    return {"model_type": type(model).__name__, "data_names": list(model.data_names), "body": data}


def predict_fn(data, model, ctx):
    return {**data, "context_type": type(ctx).__name__, "request_id": ctx.get_request_id(0),
            "same_model": model is not None}
'''


@pytest.fixture(scope="module")
def keyword_server(module_servers, tmp_path_factory):
    model_dir = make_dir(tmp_path_factory.mktemp("keyword"))
    export_checkpoint(model_dir)
    write_code(model_dir, MODEL_KEYWORD_HOOKS)
    return module_servers(model_dir, ONE_WORKER)


def test_mxnet_13_input_fn_model_parameter_gets_model(keyword_server):
    """mxnet.md §11 item 13 (§4.1): a user input_fn(data, content_type, model) receives the model."""
    report = ok(keyword_server.post(data="[[1,2,3,4]]")).json()
    assert report["model_type"] == "Module" and report["data_names"] == ["data"]
    assert report["body"] == "[[1,2,3,4]]"


def test_mxnet_14_input_fn_defaulted_extra_keeps_default(serve, tmp_path):
    """mxnet.md §11 item 14 (§7): input_fn(data, content_type, extra=7) keeps extra == 7 (no context)."""
    model_dir = make_dir(tmp_path)
    export_checkpoint(model_dir)
    write_code(model_dir, '''
        def input_fn(data, content_type, extra=7):
            return {"extra": extra}


        def predict_fn(data, model):
            return data


        def output_fn(prediction, accept, context=None):
            return {**prediction, "output_context": context}
    ''')
    server = serve(model_dir, ONE_WORKER)
    assert server.invoke_json([1]) == {"extra": 7, "output_context": None}


def test_mxnet_15_predict_fn_context_parameter_gets_context(keyword_server):
    """mxnet.md §11 item 15 (§7): a user predict_fn(data, model, ctx) receives the context."""
    response = ok(keyword_server.post(data="[[1,2,3,4]]"))
    report = response.json()
    assert report["context_type"] == "Context" and report["same_model"] is True
    assert report["request_id"]


# ---------------------------------------------------------------- §5 Gluon defaults

def test_mxnet_16_gluon_model_fn_json_and_npy(gluon_server):
    """mxnet.md §11 item 16 (§5, §9 case C): Gluon model from a user model_fn; JSON and NPY in, JSON and NPY out."""
    expected = gluon_server.net(mx.nd.array(ROWS[:3])).asnumpy()
    as_json = np.asarray(gluon_server.invoke_json(ROWS[:3].tolist()))
    np.testing.assert_allclose(as_json, expected, rtol=1e-6, atol=1e-7)
    response = ok(gluon_server.post(data=npy(ROWS[:3]), content_type=NPY, accept=NPY))
    assert response.headers["Content-Type"] == NPY
    array = from_npy(response.content)
    assert array.dtype == np.float32
    np.testing.assert_array_equal(array, expected)
    mixed = ok(gluon_server.post(data=npy(ROWS[:3].astype(np.float64)), content_type=NPY, accept=JSON)).json()
    np.testing.assert_allclose(mixed, expected, rtol=1e-6, atol=1e-7)
    mixed = from_npy(ok(gluon_server.post(data=json.dumps(ROWS[:3].tolist()), accept=NPY)).content)
    np.testing.assert_array_equal(mixed, expected)


def test_mxnet_17_gluon_csv_in_csv_out(gluon_server):
    """mxnet.md §11 item 17 (§5): a Gluon model takes CSV input and gives CSV output (AWS rejects both)."""
    response = ok(gluon_server.post(data=csv_rows(ROWS[:2]), content_type=CSV, accept=CSV))
    assert response.headers["Content-Type"] == CSV
    values = np.genfromtxt(io.StringIO(response.text), delimiter=",")
    np.testing.assert_allclose(values, gluon_server.net(mx.nd.array(ROWS[:2])).asnumpy(), rtol=1e-6, atol=1e-7)


def test_mxnet_17_gluon_jsonlines(gluon_server):
    """mxnet.md §5: application/jsonlines in and out for the Gluon defaults [smserve improvement]."""
    body = "\n".join(json.dumps(row) for row in ROWS[:3].tolist())
    response = ok(gluon_server.post(data=body, content_type="application/jsonlines", accept="application/jsonlines"))
    lines = [json.loads(line) for line in response.text.splitlines()]
    np.testing.assert_allclose(lines, gluon_server.net(mx.nd.array(ROWS[:3])).asnumpy(), rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------- §4.3 output

def test_mxnet_18_module_csv_rows_end_with_newline(case_a):
    """mxnet.md §11 item 18 (§4.3): Accept text/csv returns one row per line, each ending in \\n, with the
    values of prediction.asnumpy().tolist() (float64 text of the float32 results)."""
    response = ok(case_a.post(data=json.dumps(ROWS[:3].tolist()), accept=CSV))
    assert response.headers["Content-Type"] == CSV
    text = response.text
    assert text.endswith("\n") and text.count("\n") == 3
    assert all(line and len(line.split(",")) == 3 for line in text.split("\n")[:-1])
    values = np.genfromtxt(io.StringIO(text), delimiter=",")
    np.testing.assert_array_equal(values, np.asarray(case_a.invoke_json(ROWS[:3].tolist())))


def test_mxnet_19_two_outputs_json_list_of_two_lists(serve, tmp_path):
    """mxnet.md §11 item 19 (§4.3): a Module with two outputs returns a JSON list of two lists."""
    model_dir = make_dir(tmp_path)
    net = two_heads(model_dir)
    server = serve(model_dir, ONE_WORKER)
    result = server.invoke_json(ROWS[:2].tolist())
    a, b = net(mx.nd.array(ROWS[:2]))
    assert isinstance(result, list) and len(result) == 2
    np.testing.assert_allclose(result[0], a.asnumpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(result[1], b.asnumpy(), rtol=1e-6, atol=1e-7)
    # outputs of different widths do not stack: CSV is a 500 EncodeError, not a traceback
    response = server.post(data=json.dumps(ROWS[:2].tolist()), accept=CSV)
    assert response.status_code == 500 and response.json()["type"] == "EncodeError"


def test_mxnet_20_npy_output_keeps_float32(case_a):
    """mxnet.md §11 item 20 (§4.3): NPY output of a float32 Module result has dtype float32."""
    response = ok(case_a.post(data=json.dumps(ROWS[:2].tolist()), accept=NPY))
    assert response.headers["Content-Type"] == NPY
    array = from_npy(response.content)
    assert array.dtype == np.float32 and array.shape == (2, 3)
    np.testing.assert_allclose(array, case_a.invoke_json(ROWS[:2].tolist()), rtol=0, atol=0)


def test_mxnet_21_image_png_415(case_a, gluon_server):
    """mxnet.md §11 item 21 (§4.1, §5): image/png with the default input_fn → 415 (AWS 500)."""
    for server in (case_a, gluon_server):
        response = server.post(data=b"\x89PNG\r\n", content_type="image/png")
        assert response.status_code == 415, response.text
        assert response.json()["type"] == "UnsupportedMediaType"


def test_mxnet_bad_inputs_are_4xx(case_a, gluon_server):
    """mxnet.md §4.1, core §9/§10: bad bodies get 400/406/415 with a JSON error, never a 500."""
    cases = [
        (JSON, "[[1,2],[3]]", 400),  # ragged (numpy 1.23 makes an object array here)
        (JSON, '{"a": 1}', 400),  # JSON object is not numeric data
        (JSON, "[[1,2", 400),  # invalid JSON
        (CSV, "a,b,c,d", 400),  # text cells
        (CSV, "1,2,3", 400),  # 3 values do not reshape to (-1, 4)
        (NPY, b"not npy", 400),
        ("application/x-npz", npz(wrong=np.zeros((1, 4))), 400),  # members must be the data names
    ]
    for content_type, body, status in cases:
        response = case_a.post(data=body, content_type=content_type)
        assert response.status_code == status, (content_type, body, response.text)
        assert response.json()["code"] == status
    pickled = io.BytesIO()
    np.save(pickled, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    for server in (case_a, gluon_server):
        response = server.post(data=pickled.getvalue(), content_type=NPY)
        assert response.status_code == 400 and response.json()["type"] == "PickleRejected"
        response = server.post(data="[[1,2,3,4]]", accept="application/xml")
        assert response.status_code == 406 and response.json()["type"] == "NotAcceptable"


def test_mxnet_multi_input_module_npz(serve, tmp_path):
    """mxnet.md §4.1: a two-input Module takes an NPZ with one member per data name; other types → 400 that
    says a custom input_fn is needed (AWS fails on `[data_shape] = model.data_shapes`)."""
    model_dir = make_dir(tmp_path)
    net = two_inputs(model_dir)
    server = serve(model_dir, {**ONE_WORKER, "SAGEMAKER_DEFAULT_MODEL_FIRST_DIMENSION_SIZE": "2"})
    x = ROWS[:3]
    y = np.arange(6, dtype=np.float32).reshape(3, 2)
    result = ok(server.post(data=npz(data1=y, data0=x), content_type=NPZ)).json()
    np.testing.assert_allclose(result, net(mx.nd.array(x), mx.nd.array(y)).asnumpy(), rtol=1e-6, atol=1e-7)
    response = server.post(data="[[1,2,3,4]]")
    assert response.status_code == 400 and "input_fn" in response.json()["message"]


# ---------------------------------------------------------------- §6 handler selection

PLAIN_OBJECT = '''
class Doubler:
    def __call__(self, x):
        return x * 2


def model_fn(model_dir):
    return Doubler()
'''


def test_mxnet_22_plain_object_without_predict_fn_startup_error(serve, tmp_path):
    """mxnet.md §11 item 22 (§6): model_fn returning a plain object with no predict_fn → startup error
    naming the type."""
    model_dir = make_dir(tmp_path)
    write_code(model_dir, PLAIN_OBJECT)
    server = serve(model_dir, ONE_WORKER, ready=False)
    assert server.wait_exit(90) != 0
    logs = server.logs()
    assert "Unsupported model type: inference.Doubler" in logs, logs[-3000:]
    assert "predict_fn or transform_fn" in logs


def test_mxnet_23_plain_object_with_predict_fn_serves(serve, tmp_path):
    """mxnet.md §11 item 23 (§6): the same object with a user predict_fn serves (Gluon-style default I/O)."""
    model_dir = make_dir(tmp_path)
    write_code(model_dir, PLAIN_OBJECT + '''

def predict_fn(data, model):
    return model(data)
''')
    server = serve(model_dir, ONE_WORKER)
    assert server.invoke_json([[1, 2], [3, 4]]) == [[2.0, 4.0], [6.0, 8.0]]
    array = from_npy(ok(server.post(data=npy(np.array([1, 2], dtype=np.int64)), content_type=NPY,
                                    accept=NPY)).content)
    assert array.dtype == np.float32 and array.tolist() == [2.0, 4.0]


# ---------------------------------------------------------------- §8 threads, workers, timeout

def test_mxnet_24_thread_variables_in_each_worker(transform_two_workers):
    """mxnet.md §11 item 24 (§8): MXNET_CPU_WORKER_NTHREADS is 1 and OMP_NUM_THREADS = CPUs ÷ workers in
    each worker (both workers seen)."""
    seen = {}
    for _ in range(60):
        for report in reports(transform_two_workers, 4):
            seen[report["pid"]] = report
        if len(seen) == 2:
            break
    assert len(seen) == 2, "both workers should answer"
    for report in seen.values():
        env = report["env"]
        assert env["MXNET_CPU_WORKER_NTHREADS"] == "1"
        assert env["MXNET_CPU_PRIORITY_NTHREADS"] == "1" and env["MXNET_KVSTORE_REDUCTION_NTHREADS"] == "1"
        threads = str(max(1, report["cpus"] // 2))
        assert env["OMP_NUM_THREADS"] == threads and env["MKL_NUM_THREADS"] == threads


def test_mxnet_mms_aliases(serve, tmp_path):
    """mxnet.md §8, core §12/§15: MMS_NUM_WORKER sets the worker count and MMS_MAX_REQUEST_SIZE the payload
    limit in this family."""
    model_dir = make_dir(tmp_path)
    export_checkpoint(model_dir)
    server = serve(model_dir, {"MMS_NUM_WORKER": "2", "MMS_MAX_REQUEST_SIZE": "1000"})
    logs = server.logs()
    assert re.search(r"workers\s+2 \(MMS_NUM_WORKER", logs), logs[-2000:]
    assert server.post(data=json.dumps([[1.0, 2.0, 3.0, 4.0]] * 100)).status_code == 413


def test_mxnet_25_timeout_is_seconds(transform_two_workers):
    """mxnet.md §11 item 25 (§8): SAGEMAKER_MODEL_SERVER_TIMEOUT=2 gives 504 for a 3-s handler (seconds, not
    MMS minutes); the startup log states the unit."""
    started = time.monotonic()
    response = transform_two_workers.post(data="sleep", content_type="text/plain")
    elapsed = time.monotonic() - started
    assert response.status_code == 504, response.text
    assert response.json()["type"] == "DeadlineExceeded"
    assert 1.5 < elapsed < 2.9
    assert re.search(r"request deadline\s+2 s \(SAGEMAKER_MODEL_SERVER_TIMEOUT; seconds\)",
                     transform_two_workers.logs())


def test_mxnet_case_d_transform_fn_with_default_model_fn(transform_two_workers, case_a):
    """mxnet.md §9 case D: default model_fn + user transform_fn."""
    report = reports(transform_two_workers, 1)[0]
    np.testing.assert_allclose(report["result"], case_a.invoke_json([[1, 2, 3, 4]]), rtol=1e-6)


# ---------------------------------------------------------------- §1 log noise

def test_mxnet_26_harmless_warnings_not_error_level(serve, tmp_path):
    """mxnet.md §11 item 26: `Cannot decide type` (SymbolBlock.imports) and `Subgraph backend MKLDNN` are not
    logged at ERROR level (case B triggers the first, Module binding the second)."""
    model_dir = make_dir(tmp_path)
    export_checkpoint(model_dir, shapes=False)
    server = serve(model_dir, {**ONE_WORKER, "SMSERVE_LOG_FORMAT": "json"})
    server.invoke_json(ROWS[:1].tolist())
    for line in server.logs().splitlines():
        if "Cannot decide type" in line or "Subgraph backend" in line:
            try:
                entry = json.loads(line)
            except ValueError:
                entry = {"level": "raw"}  # native stderr line from libmxnet: no level at all
            assert entry.get("level") not in ("ERROR", "CRITICAL"), line


# ---------------------------------------------------------------- §10 MME

MME_SCRIPT = '''
def transform_fn(model, body, content_type, accept):
    return {"script": "%s", "model": type(model).__name__}
'''


def test_mxnet_27_mme_models_use_their_own_scripts(serve, tmp_path):
    """mxnet.md §11 item 27 (§10, core §13.4): two MXNet models with their own code/inference.py each use
    their own script."""
    root = make_dir(tmp_path, "models")
    for name in ("alpha", "beta"):
        model_dir = make_dir(root, name)
        export_checkpoint(model_dir)
        write_code(model_dir, MME_SCRIPT % name)
    base = CONTAINER_MODEL_DIR if TARGET == "container" else str(root)
    server = serve(root, {"SAGEMAKER_MULTI_MODEL": "true", "SMSERVE_MME_MODELS_ROOT": base, **ONE_WORKER})
    for name in ("alpha", "beta"):
        response = server.post("/models", data=json.dumps({"model_name": name, "url": f"{base}/{name}"}),
                               timeout=120)
        assert response.status_code == 200, response.text
    for name in ("alpha", "beta"):
        result = ok(server.post(f"/models/{name}/invoke", data="[[1,2,3,4]]")).json()
        assert result == {"script": name, "model": "Module"}


# ---------------------------------------------------------------- fork safety

def _maps(pid: int) -> str:
    with open(f"/proc/{pid}/maps") as handle:
        return handle.read()


def _process_maps(server) -> dict[int, str]:
    """/proc/<pid>/maps of the supervisor (the process whose children are workers) and of each worker."""
    if TARGET == "container":
        script = ("for p in /proc/[0-9]*; do c=$(tr '\\0' ' ' < $p/cmdline 2>/dev/null); "
                  "case \"$c\" in /*python*smserve\\ serve*) echo \"${p#/proc/} $(awk '/^PPid/{print $2}' $p/status)\";; esac; "
                  "done")
        out = subprocess.run(["docker", "exec", server.name, "sh", "-c", script], capture_output=True, text=True)
        rows = [tuple(map(int, line.split())) for line in out.stdout.splitlines() if line.strip()]
        pids = {pid for pid, _ in rows}
        maps = {}
        for pid, ppid in rows:
            text = subprocess.run(["docker", "exec", server.name, "cat", f"/proc/{pid}/maps"], capture_output=True,
                                  text=True).stdout
            maps[pid] = ("supervisor" if ppid not in pids else "worker", text)
        return maps
    supervisor = server.proc.pid
    maps = {supervisor: ("supervisor", _maps(supervisor))}
    for pid in server.worker_pids():
        maps[pid] = ("worker", _maps(pid))
    return maps


def test_mxnet_28_supervisor_never_maps_libmxnet(case_a):
    """mxnet.md §11 item 28 (§1): the supervisor process never imports mxnet — libmxnet.so is absent from
    /proc/<supervisor>/maps while every worker maps it."""
    maps = _process_maps(case_a)
    roles = [role for role, _ in maps.values()]
    assert roles.count("supervisor") == 1 and roles.count("worker") >= 1, roles
    for pid, (role, text) in maps.items():
        if role == "supervisor":
            assert "libmxnet.so" not in text, f"supervisor {pid} maps libmxnet.so"
            assert "site-packages/mxnet/" not in text
        else:
            assert "libmxnet.so" in text, f"worker {pid} should have mxnet loaded"
