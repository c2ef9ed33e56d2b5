"""User scripts and model directories shared by test_core_codecs.py and test_core_http.py.

Each script reports back what the server handed to it, so the tests can check body delivery (core §8),
decoding (§9), negotiation (§10) and error mapping (§11) through real HTTP. The behaviour of one request
is selected with the `X-Probe` (or `X-Result`) request header, read through the hook context.
"""

from __future__ import annotations

from pathlib import Path

from ..models import make_dir, write_code

# One worker keeps the servers cheap; the tests do not depend on the worker count.
ONE_WORKER = {"SAGEMAKER_MODEL_SERVER_WORKERS": "1"}

BIG_RESPONSE_BYTES = 20_000_000

PROBE = '''
import json

import numpy as np

try:  # the compatibility shim of core §7.7, when the image has it
    from sagemaker_inference.decoder import decode
except ImportError:
    from smserve.codecs import decode
try:
    from sagemaker_inference.errors import GenericInferenceToolkitError, UnsupportedFormatError
except ImportError:  # the toolkit's classes, as AWS defines them (status propagation is duck-typed: core §11.3)
    class BaseInferenceToolkitError(Exception):
        def __init__(self, status_code, message, phrase):
            self.status_code, self.message, self.phrase = status_code, message, phrase
            super().__init__(status_code, message, phrase)

    class GenericInferenceToolkitError(BaseInferenceToolkitError):
        def __init__(self, status_code, message=None, phrase=None):
            message = message or "Invalid Request"
            super().__init__(status_code, message, phrase or message)

    class UnsupportedFormatError(Exception):
        def __init__(self, content_type, **kwargs):
            super().__init__(f"Content type {content_type} is not supported by this inference endpoint.")


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
    prediction["custom_attributes"] = [context.get_request_header(0, name) for name in
                                       (CUSTOM, CUSTOM.lower(), CUSTOM.upper(), "x-AMZN-sagemaker-CUSTOM-attributes")]
    return json.dumps(prediction), "application/json"
''' % {"big": BIG_RESPONSE_BYTES}


# Default input_fn and output_fn around an Echo TorchScript model; predict_fn returns canned values on demand.
ECHO_PREDICT = '''
import numpy as np
import torch

CANNED = {
    "f32": lambda: np.array([0.1], dtype=np.float32),
    "f32-tensor": lambda: torch.tensor([0.1], dtype=torch.float32),
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
    with torch.inference_mode():
        return model(data)
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
    """Echo TorchScript model (float32 parameter) + the canned predict_fn; default input_fn and output_fn."""
    from ..torch_models import Echo, save_torchscript

    model_dir = make_dir(tmp)
    save_torchscript(Echo(), model_dir / "model.pt")
    write_code(model_dir, ECHO_PREDICT)
    return model_dir


def transform_dir(tmp: Path) -> Path:
    model_dir = make_dir(tmp)
    write_code(model_dir, TRANSFORM)
    return model_dir
