"""User scripts and model directories shared by the core contract modules (test_core_*.py).

Each script reports back what the server handed to it, so the tests can check body delivery (core §8),
decoding (§9), negotiation (§10) and error mapping (§11) through real HTTP. The behaviour of one request
is selected with the `X-Probe` (or `X-Result`) request header, read through the hook context.

The model builders (`echo_dir`, `default_model`) follow SMSERVE_TEST_FAMILY through tests/families.py and
import the family's framework only when called, so the core modules themselves import no framework.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..families import family_models
from ..models import make_dir, write_code

# One worker keeps the servers cheap; the tests do not depend on the worker count.
ONE_WORKER = {"SAGEMAKER_MODEL_SERVER_WORKERS": "1"}
GOOD = "[[1.0, 2.0]]"  # a request the echo and probe scripts answer with 200


def still_serves(server):
    """The spec's "the next request on the same server succeeds" after a refused request."""
    response = server.post(data=GOOD, content_type="application/json", accept="application/json")
    assert response.status_code == 200, response.text
    return response


def startup_line(serve, tmp_path, env: dict) -> str:
    """Start a server that must refuse to start; return its one line of explanation (exit status 2)."""
    status, logs = serve(make_dir(tmp_path), env, ready=False).wait_failed_start(60)
    assert status == 2, logs
    assert "Traceback" not in logs, logs
    lines = [line for line in logs.splitlines() if line.startswith("smserve: ")]
    assert len(lines) == 1, logs
    return lines[0]


def error(response, status: int, error_type: str | None = None) -> dict:
    """The spec's JSON error body (core §9) with this status and, when given, this type."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["code"] == status and set(body) >= {"code", "type", "message", "request_id"}
    if error_type is not None:
        assert body["type"] == error_type, body
    return body

BIG_RESPONSE_BYTES = 20_000_000

PROBE = '''
import json

import numpy as np

from sagemaker_inference.decoder import decode  # the compatibility package of core §7.7, as AWS scripts import it
from sagemaker_inference.errors import GenericInferenceToolkitError, UnsupportedFormatError


class TooManyRequests(Exception):
    status_code = 429


BIG = (bytes(range(256)) * (%(big)d // 256 + 1))[:%(big)d]
CUSTOM = "X-Amzn-SageMaker-Custom-Attributes"


def describe(value):
    import scipy.sparse

    if scipy.sparse.issparse(value):
        return {"kind": "sparse", "format": value.format, "shape": list(value.shape),
                "value": value.toarray().tolist()}
    if isinstance(value, dict):
        return {"kind": "dict", "items": {k: describe(v) for k, v in value.items()}}
    if isinstance(value, np.ndarray):
        out = {"kind": "ndarray", "dtype": str(value.dtype), "shape": list(value.shape),
               "fields": [str(value.dtype.fields[n][0]) for n in value.dtype.names] if value.dtype.names else None}
        if value.dtype == object:
            out["value"] = repr(value[()] if value.ndim == 0 else value.tolist())
        else:
            out["value"] = value.tolist()
        return out
    return {"kind": type(value).__name__, "value": repr(value)}


def model_fn(model_dir):
    return "probe-model"


def input_fn(body, content_type, context):
    probe = context.get_request_header(0, "X-Probe") or ""
    if probe == "ufe-input":
        raise UnsupportedFormatError(content_type)
    if probe in ("raw", "bare", "big", "ufe-output", "attrs", "set-attr", "set-attr-long", "generic422",
                 "status429", "valueerror", "status400"):
        return {"body_type": type(body).__name__, "content_type": content_type,
                "body": body if isinstance(body, str) else body.decode("latin-1")}
    return {"decoded": describe(decode(body, content_type))}


def predict_fn(data, model, context):
    probe = context.get_request_header(0, "x-probe") or ""
    if probe == "generic422":
        raise GenericInferenceToolkitError(422, "x")
    if probe == "status429":
        raise TooManyRequests("slow down")
    if probe == "valueerror":
        raise ValueError("bad value 42")
    if probe == "status400":
        context.set_response_status(400, "bad")
    return data


def output_fn(prediction, accept, context):
    probe = context.get_request_header(0, "X-PROBE") or ""
    if probe == "ufe-output":
        raise UnsupportedFormatError(accept)
    if probe == "bare":
        return "plain body"
    if probe == "big":
        return BIG
    if probe == "set-attr":
        context.set_response_header(0, CUSTOM, "trace=xyz,v=2")
    if probe == "set-attr-long":
        context.set_response_header(0, CUSTOM, "a" * 1025)
    prediction["accept"] = accept
    prediction["target_model"] = context.get_request_header(0, "X-Amzn-SageMaker-Target-Model")
    prediction["custom_attributes"] = [context.get_request_header(0, name) for name in
                                       (CUSTOM, CUSTOM.lower(), CUSTOM.upper(), "x-AMZN-sagemaker-CUSTOM-attributes")]
    return json.dumps(prediction), "application/json"
''' % {"big": BIG_RESPONSE_BYTES}


# The family's default input_fn and output_fn around an Echo model; predict_fn returns canned values on demand
# ("f32-tensor" is a float32 tensor of the family's framework). A context parameter without a default is
# passed by every family (core §7.2, mxnet.md §7).
ECHO_PREDICT_TEMPLATE = '''
import numpy as np
import %(framework)s

CANNED = {
    "f32": lambda: np.array([0.1], dtype=np.float32),
    "f32-tensor": lambda: %(f32_tensor)s,
    "nonfinite": lambda: np.array([np.nan, np.inf, -np.inf]),
    "int1d": lambda: [1, 2, 3],
    "int2d": lambda: [[1, 2], [3, 4]],
    "3d": lambda: np.zeros((2, 2, 2)),
    "ragged": lambda: [[1, 2], [3]],
    "dict": lambda: {"a": 1},
    "object-array": lambda: np.array([{"a": 1}, None], dtype=object),
}


def predict_fn(data, model, context):
    name = context.get_request_header(0, "X-Result")
    if name:
        return CANNED[name]()
%(forward)s
'''

TRANSFORM = '''
def model_fn(model_dir):
    return "transform-model"


def transform_fn(model, body, content_type, accept, context):
    if context.get_request_header(0, "X-Probe") == "raise":
        raise ValueError("transform failed on purpose")
    return "hello " + type(body).__name__, "text/plain"
'''


def probe_dir(tmp: Path) -> Path:
    model_dir = make_dir(tmp)
    write_code(model_dir, PROBE)
    return model_dir


def echo_dir(tmp: Path) -> Path:
    """An Echo model loaded by the family's default model_fn, the canned predict_fn, and the family's default
    input_fn and output_fn (the family's write_echo_model says which Echo model)."""
    model_dir = make_dir(tmp)
    family = family_models()
    family.write_echo_model(model_dir)
    write_code(model_dir, ECHO_PREDICT_TEMPLATE % family.ECHO_SCRIPT)
    return model_dir


@dataclass
class DefaultModel:
    """A real model written for the family's default model_fn (no user module) and what the framework itself
    computes for `payload`."""

    payload: list
    expected: list
    local: Callable[[list], list]  # rows -> the framework's own result for them

    @property
    def outputs(self) -> int:
        return len(self.expected[0])

    def check(self, result, expected: list | None = None) -> None:
        expected = self.expected if expected is None else expected
        assert np.shape(result) == np.shape(expected), (result, expected)
        assert np.allclose(np.asarray(result, dtype=np.float64), np.asarray(expected, dtype=np.float64),
                           atol=1e-6), (result, expected)


def default_model(model_dir: Path) -> DefaultModel:
    """Write a model the family default model_fn loads, served entirely by the family defaults, with what the
    framework itself computes (the family's write_default_model and predict_default)."""
    payload = [[0.0, 1.0, 2.0, 3.0]]
    family = family_models()
    family.write_default_model(model_dir)

    def local(rows):
        return family.predict_default(model_dir, rows)
    return DefaultModel(payload, local(payload), local)


def transform_dir(tmp: Path) -> Path:
    model_dir = make_dir(tmp)
    write_code(model_dir, TRANSFORM)
    return model_dir
