"""core.md §2 routes and §21 checklist basics, against the family's default model served with the family
defaults (PyTorch: a TorchScript MLP; MXNet: a Module checkpoint MLP; core_scripts.default_model)."""

from __future__ import annotations

import json
import re

import pytest

from ..models import make_dir
from .core_scripts import default_model


@pytest.fixture(scope="module")
def mlp_server(module_servers, tmp_path_factory):
    model_dir = make_dir(tmp_path_factory.mktemp("mlp"))
    model = default_model(model_dir)
    server = module_servers(model_dir)
    server.model = model
    return server


def test_core_1_ping_200_when_model_ready(mlp_server):
    """core §21 item 1 / 9 (ready half): /ping is 200 with {"status": "Healthy"} once loaded."""
    response = mlp_server.get("/ping")
    assert response.status_code == 200
    assert response.json() == {"status": "Healthy"}


def test_core_10_ping_any_method(mlp_server):
    """core §21 item 10: /ping answers 200 for GET, HEAD and POST."""
    for method in ("GET", "HEAD", "POST"):
        assert mlp_server.request(method, "/ping").status_code == 200


def test_core_13_invocations_returns_model_result(mlp_server):
    """core §21 item 13, pytorch §11 item 1 and mxnet §11 item 4: result equals the framework's local output
    (TorchScript forward; MXNet Module.predict)."""
    result = mlp_server.invoke_json([[0, 1, 2, 3]])
    mlp_server.model.check(result, mlp_server.model.local([[0.0, 1, 2, 3]]))


def test_core_14_models_model_invoke_equals_invocations(mlp_server):
    """core §21 item 14."""
    body = json.dumps([[1, 2, 3, 4]])
    a = mlp_server.post("/invocations", body).json()
    b = mlp_server.post("/models/model/invoke", body).json()
    assert a == b


def test_core_15_model_name_query(mlp_server):
    """core §21 item 15."""
    body = json.dumps([[1, 2, 3, 4]])
    assert mlp_server.post("/invocations?model_name=model", body).status_code == 200
    response = mlp_server.post("/invocations?model_name=other", body)
    assert response.status_code == 404
    assert response.json()["type"] == "ModelNotFound"


def test_core_16_predictions_alias(mlp_server):
    """core §21 item 16."""
    response = mlp_server.post("/predictions/model", json.dumps([[1, 2, 3, 4]]))
    assert response.status_code == 200
    assert len(response.json()[0]) == mlp_server.model.outputs  # 2 (PyTorch MLP) or 3 (MXNet MLP)


def test_core_17_unknown_route_json_404(mlp_server):
    """core §21 item 17."""
    response = mlp_server.get("/nope")
    assert response.status_code == 404
    body = response.json()
    assert set(body) >= {"code", "type", "message", "request_id"}
    assert body["type"] == "RouteNotFound" and body["code"] == 404
    assert body["message"] == "no route for GET /nope"


def test_core_18_wrong_method_405_with_allow(mlp_server):
    """core §21 item 18."""
    response = mlp_server.get("/invocations")
    assert response.status_code == 405
    assert "POST" in response.headers["Allow"]
    assert response.json()["type"] == "MethodNotAllowed"


def test_core_20_inference_id_echoed(mlp_server):
    """core §21 item 20: Inference-Id is echoed and is the error body's request_id."""
    response = mlp_server.post(data="[[1,2", headers={"X-Amzn-SageMaker-Inference-Id": "abc"})
    assert response.headers["X-Amzn-SageMaker-Inference-Id"] == "abc"
    assert response.json()["request_id"] == "abc"


def test_core_21_request_id_echoed_or_generated(mlp_server):
    """core §21 item 21."""
    response = mlp_server.post(data="[[1,2,3,4]]", headers={"X-Request-Id": "r1"})
    assert response.headers["X-Request-Id"] == "r1"
    response = mlp_server.post(data="[[1,2,3,4]]")
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-Id"])


def test_core_99_execution_parameters(mlp_server):
    """core §21 item 99 (defaults half): three keys; MaxPayloadInMB never above the enforced limit."""
    response = mlp_server.get("/execution-parameters")
    assert response.status_code == 200
    assert response.json() == {"MaxConcurrentTransforms": 2, "BatchStrategy": "MULTI_RECORD", "MaxPayloadInMB": 6}
