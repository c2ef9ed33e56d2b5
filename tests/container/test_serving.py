"""The server inside the image (images.md checklist 17, 18; core §1.1, §17 SIGTERM drain; issue 3 item 4).

Every container binds its own free port (SAGEMAKER_BIND_TO_PORT, --network host), is reached on 127.0.0.1,
mounts the model read-only at /opt/ml/model and is removed afterwards.
"""
from __future__ import annotations

import io
import threading
import time

import numpy as np
import pytest
import requests

from ..families import family_models
from .conftest import make_model_dir

pytestmark = pytest.mark.container

REQ_PKG = "tabulate==0.9.0"   # tiny pure-Python package from PyPI, not in the image

INFERENCE_WITH_REQ = '''
import tabulate          # installed from code/requirements.txt into the writable prefix at start-up

def output_fn(prediction, accept):
    import json
    values = (prediction.asnumpy() if hasattr(prediction, "asnumpy") else  # mxnet
              prediction.numpy() if hasattr(prediction, "numpy") else prediction)  # torch; numpy (neo)
    return json.dumps({"prediction": values.tolist(), "tabulate": tabulate.__version__}), "application/json"
'''

INFERENCE_SLOW = '''
import json
import time


def transform_fn(model, body, content_type, accept):
    seconds = json.loads(body)[0][0]
    time.sleep(seconds)
    return json.dumps({"slept": seconds}), "application/json"
'''

X = [[1.0, 2.0, 3.0, 4.0]]


def _expected(model_dir):
    return np.asarray(family_models().predict_default(model_dir, X))


def _invoke_json(url):
    r = requests.post(url + "/invocations", json=X, timeout=30)
    assert r.status_code == 200, r.text
    return r


def test_core_1_serve_answers_ping_and_invocations(containers, model_dir):
    c = containers(model_dir)
    c.wait_ready()
    r = _invoke_json(c.url)
    np.testing.assert_allclose(np.array(r.json()), _expected(model_dir), rtol=1e-5)
    buf = io.BytesIO()
    np.save(buf, np.array(X, dtype=np.float32))
    r = requests.post(c.url + "/invocations", data=buf.getvalue(),
                      headers={"Content-Type": "application/x-npy", "Accept": "application/x-npy"}, timeout=30)
    assert r.status_code == 200, r.text
    out = np.load(io.BytesIO(r.content), allow_pickle=False)
    np.testing.assert_allclose(out, _expected(model_dir), rtol=1e-5)


def test_images_17_runs_as_user_1000(containers, model_dir):
    c = containers(model_dir, run_args=("--user", "1000:1000"))
    c.wait_ready()
    _invoke_json(c.url)
    top = c.logs()
    assert "Permission denied" not in top


def test_images_18_read_only_tmpfs_with_requirements(containers, tmp_path):
    model_dir = make_model_dir(tmp_path, inference=INFERENCE_WITH_REQ, requirements=REQ_PKG + "\n")
    c = containers(model_dir, run_args=("--read-only", "--tmpfs", "/tmp", "--user", "1000:1000"))
    c.wait_ready(timeout=180)
    r = _invoke_json(c.url)
    body = r.json()
    assert body["tabulate"] == REQ_PKG.split("==")[1]
    np.testing.assert_allclose(np.array(body["prediction"]), _expected(model_dir), rtol=1e-5)


def test_core_17_sigterm_drains_in_flight_and_exits_0(containers, tmp_path):
    model_dir = make_model_dir(tmp_path, inference=INFERENCE_SLOW)
    c = containers(model_dir, env={"SAGEMAKER_MODEL_SERVER_WORKERS": "1"})
    c.wait_ready()
    result: dict = {}

    def slow_call():
        try:
            result["r"] = requests.post(c.url + "/invocations", json=[[3.0, 0.0, 0.0, 0.0]], timeout=60)
        except Exception as exc:  # noqa: BLE001
            result["exc"] = exc

    t = threading.Thread(target=slow_call)
    t.start()
    time.sleep(1.0)                                  # the request is in flight (predict_fn sleeps 3 s)
    from .conftest import docker
    docker("kill", "-s", "TERM", c.name)
    code = c.wait_exit(timeout=40)
    t.join(timeout=60)
    assert "exc" not in result, result.get("exc")
    assert result["r"].status_code == 200, result["r"].text
    assert code == 0, c.logs()[-3000:]
    with pytest.raises(requests.ConnectionError):
        requests.get(c.url + "/ping", timeout=2)
