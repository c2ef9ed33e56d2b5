"""The TF Serving REST API (§9.1) as a pure function of (method, path, body) -> (status, body).

No HTTP server lives here, so the same handler serves uvicorn (http.py) and the front's faster local channel.
Dispatch follows tensorflow_serving/model_servers/http_rest_api_handler.cc and http_rest_api_util.cc: the same
path patterns, the same order of checks (JSON before model lookup), the same texts.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable, Mapping
from urllib.parse import unquote

import numpy as np

from .errors import BackendError, Code, invalid_argument
from .examples import classification_results, regression_values, serialized_examples_from_json
from .json_parsing import parse_json_document
from .json_responses import classify_response_body, error_body, predict_response_body, regress_response_body
from .servables import ModelStore, Servable, Signature, ensure_servable_inputs
from .tensors import RequestFormat, predict_inputs_from_json, require_object, signature_name_of

log = logging.getLogger(__name__)

_API_PATH = re.compile(r"(?i)/v1/.*")
_PREDICTION_PATH = re.compile(
    r"(?i)/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)", re.ASCII)
_STATUS_PATH = re.compile(
    r"(?i)/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?", re.ASCII)

# libevent's evhttp_send_error() page, which TF Serving sends for paths outside /v1/.
NOT_FOUND_PAGE = (b"<HTML><HEAD>\n<TITLE>404 Not Found</TITLE>\n</HEAD><BODY>\n<H1>Not Found</H1>\n"
                  b"</BODY></HTML>\n")

_INT64_MAX = 2**63 - 1

PredictRunner = Callable[[Servable, Signature, Mapping[str, np.ndarray], RequestFormat], Mapping[str, np.ndarray]]


class _BodylessError(BackendError):
    """Errors of ParseModelInfo(), which TF Serving returns before it writes any JSON: the body stays empty."""


def _run_signature(servable: Servable, signature: Signature, inputs: Mapping[str, np.ndarray],
                   request_format: RequestFormat) -> Mapping[str, np.ndarray]:
    return signature.run(inputs)


def _proto_json(value: object) -> bytes:
    """protobuf MessageToJsonString(add_whitespace) layout: one-space indent, trailing newline."""
    return (json.dumps(value, indent=1, ensure_ascii=False) + "\n").encode("utf-8", "surrogateescape")


class RestApi:
    """Answers TF Serving REST requests from a ModelStore.

    `run_predict` runs a predict signature; the default calls `Signature.run`, a batcher can be passed instead.
    """

    def __init__(self, store: ModelStore, run_predict: PredictRunner | None = None) -> None:
        self.store = store
        self.run_predict = run_predict or _run_signature
        self._counting = threading.Lock()
        self.inference_requests = 0  # predict/classify/regress answered, logged at exit (per-instance traffic)

    def handle(self, method: str, path: str, body: bytes) -> tuple[int, bytes]:
        """One request: HTTP method, request path (query string ignored) and body -> (HTTP status, body)."""
        path = path.split("?", 1)[0]
        if method == "POST":
            with self._counting:
                self.inference_requests += 1
        if not _API_PATH.fullmatch(path):
            return 404, NOT_FOUND_PAGE
        try:
            return 200, self._dispatch(method, path, body)
        except _BodylessError as error:
            return error.http_status, b""
        except BackendError as error:
            return error.http_status, error_body(error.message)
        except Exception as error:  # a bug or an unexpected TensorFlow failure: still one JSON error answer
            log.exception("%s %s failed", method, path)
            return 500, error_body(f"{type(error).__name__}: {error}")

    # -- dispatch --------------------------------------------------------------------------------------------------

    def _dispatch(self, method: str, path: str, body: bytes) -> bytes:
        malformed = invalid_argument(f"Malformed request: {method} {path}")
        if method == "POST":
            match = _PREDICTION_PATH.fullmatch(path)
        elif method == "GET":
            match = _STATUS_PATH.fullmatch(path)
        else:
            raise malformed
        if match is None:
            raise malformed
        name_text, version_text, label_text, action = match.groups()
        name = unquote(name_text, errors="surrogateescape") if name_text else ""
        version = None
        if version_text:
            version = int(version_text)
            if version > _INT64_MAX:
                raise _BodylessError(Code.INVALID_ARGUMENT,
                                     f"Failed to convert version: {version_text} to numeric.")
        label = unquote(label_text, errors="surrogateescape") if label_text else None
        if method == "POST":
            handlers = {"predict": self._predict, "classify": self._classify, "regress": self._regress}
            handler = handlers.get(action)  # the pattern ignores case, the dispatch does not
            if handler is None:
                raise malformed
            return handler(name, version, label, body)
        if not name:
            raise invalid_argument("Missing model name in request.")
        if label is not None:
            raise self._label_error(label)
        if action == "metadata":
            return _proto_json_metadata(self.store.metadata(name, version))
        return _proto_json(self.store.status(name, version))

    @staticmethod
    def _label_error(label: str) -> BackendError:
        # No version labels are ever configured in smserve; spec §9.1 answers 404 (the real server: 400, same text).
        return BackendError(Code.NOT_FOUND, f"Unrecognized servable version label: {label}")

    def _servable(self, name: str, version: int | None, label: str | None) -> Servable:
        if label is not None:
            raise self._label_error(label)
        return self.store.servable(name, version)

    def _predict(self, name: str, version: int | None, label: str | None, body: bytes) -> bytes:
        document = require_object(parse_json_document(body))
        signature_name = signature_name_of(document)
        servable = self._servable(name, version, label)
        signature = servable.signature(signature_name)
        input_specs = ensure_servable_inputs(signature)
        request_format, inputs = predict_inputs_from_json(document, input_specs, body)
        outputs = self.run_predict(servable, signature, inputs, request_format)
        return predict_response_body(outputs, request_format)

    def _classify(self, name: str, version: int | None, label: str | None, body: bytes) -> bytes:
        document = require_object(parse_json_document(body))
        signature_name = signature_name_of(document)
        serialized = serialized_examples_from_json(document)
        servable = self._servable(name, version, label)
        labels, scores = classification_results(servable, signature_name, serialized)
        return classify_response_body(labels, scores)

    def _regress(self, name: str, version: int | None, label: str | None, body: bytes) -> bytes:
        document = require_object(parse_json_document(body))
        signature_name = signature_name_of(document)
        serialized = serialized_examples_from_json(document)
        servable = self._servable(name, version, label)
        return regress_response_body(regression_values(servable, signature_name, serialized))


def _proto_json_metadata(metadata: dict) -> bytes:
    """The real server prints model_spec and the SignatureDefMap separately and glues them (http_rest_api_util.cc)."""
    model_spec = json.dumps(metadata["model_spec"], indent=1, ensure_ascii=False)
    signature_map = json.dumps(metadata["metadata"]["signature_def"], indent=1, ensure_ascii=False)
    text = '{\n"model_spec":' + model_spec + '\n,\n"metadata": {"signature_def": ' + signature_map + "\n}\n}\n"
    return text.encode("utf-8", "surrogateescape")
