"""The front: what a worker does with an invocation in the TensorFlow family (spec tensorflow.md §4–§7).

Without handler code it converts the body by AWS's default rules and forwards it to a backend, over the built-in
backend's local channel where it can (same statuses and bodies, no HTTP on either side); with handler code it
runs `handler(data, context)`, or `input_handler` → backend → `output_handler`, with AWS's Context namedtuple.
Never imports TensorFlow: grpc is imported only when handler code exists (for `context.channel`).
"""

from __future__ import annotations

import http.client
import inspect
import io
import logging
import random
import threading
from collections import namedtuple
from types import ModuleType
from typing import Any, Callable
from urllib.parse import urlsplit

import orjson
import requests

from smserve.context import InferenceRequest, InferenceResult
from smserve.errors import ModelNotFound, ServingError, Unavailable

from . import attributes, conversion
from .backend.channel import ChannelUnavailable, LocalChannel
from .backends import BackendPlan, RoundRobin

log = logging.getLogger("smserve.tensorflow")
JSON = "application/json"
HANDLER_NAMES = ("handler", "input_handler", "output_handler")

_ContextFields = namedtuple("Context", "model_name model_version method rest_uri grpc_port channel custom_attributes "
                                       "request_content_type accept_header content_length timeout")


class Context(_ContextFields):
    """AWS's Context (fields and order of the current AWS image), plus `grpc_uri`, which AWS documented once and
    never implemented; a property, so the tuple keeps its eleven fields."""

    __slots__ = ()

    @property
    def grpc_uri(self) -> str | None:
        return None if self.grpc_port is None else f"localhost:{self.grpc_port}"


class HandlerError(ServingError):
    """A failure in the user's handler code or in what it returned: AWS answers 500 with {"error": ...}."""

    error_type = "HandlerError"

    def __init__(self, message: str, status: int = 500):
        super().__init__(message, status=status)
        self.body_fields = {"error": message}


class BackendError(ServingError):
    """The backend answered non-200: its status is the client's [AWS], its message the body's `error`."""

    error_type = "BackendError"

    def __init__(self, status: int, body: bytes):
        body = conversion.backend_error_body(status, body)
        try:
            message = str(orjson.loads(body).get("error", ""))
        except (orjson.JSONDecodeError, AttributeError):
            message = body.decode("utf-8", "replace")
        super().__init__(message or f"the backend answered {status}", status=status)
        self.body_fields = {"error": message}


def _handler_functions(module: ModuleType | None, warn: Callable[[str], None]) -> dict[str, Callable]:
    """The handler form of the user module, checked at load: a form AWS cannot run stops startup here, naming the
    file, instead of failing every request."""
    if module is None:
        return {}
    found = {name: getattr(module, name) for name in HANDLER_NAMES if callable(getattr(module, name, None))}
    where = getattr(module, "__file__", module.__name__)
    if not found:
        raise ServingError(f"{where} defines none of handler(data, context), input_handler(data, context) or "
                           f"output_handler(response, context): define handler, or input_handler and/or "
                           f"output_handler (spec tensorflow.md §4)")
    if "handler" in found and len(found) > 1:
        warn(f"{where}: handler is defined, so input_handler/output_handler are ignored")
        found = {"handler": found["handler"]}
    for name, function in found.items():
        try:
            parameters = inspect.signature(function).parameters.values()
        except (TypeError, ValueError):
            continue
        positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        variadic = any(p.kind == p.VAR_POSITIONAL for p in parameters)
        if len(positional) != 2 and not (variadic and len(positional) <= 2):
            first = "response" if name == "output_handler" else "data"
            raise ServingError(f"{where}: {name} takes {len(positional)} positional parameters; it must take "
                               f"exactly two: {name}({first}, context)")
    return found


class FrontHandler:
    def __init__(self, settings, plan: BackendPlan, module: ModuleType | None, warn: Callable[[str], None]):
        self.settings = settings
        self.plan = plan
        self.warn = warn
        self.functions = _handler_functions(module, warn)
        self.instances = RoundRobin(plan.instances)
        self._by_rest_port = {i.rest_port: i for i in plan.instances}
        self._local = threading.local()  # per predict thread: its keep-alive HTTP connections, by port
        self._channels: dict[str, LocalChannel] = {}
        self._grpc_channels: dict[int, Any] = {}

    def load(self) -> None:
        if self.plan.local_channel:
            self._channels = {i.local_socket: LocalChannel(i.local_socket) for i in self.plan.instances}
        if self.functions and not self.plan.multi_model:  # AWS gives no channel on a multi-model endpoint
            try:
                import grpc
            except ImportError:  # pragma: no cover - grpcio comes with TensorFlow in every image
                log.warning("grpcio is not installed: context.channel is None")
            else:
                self._grpc_channels = {i.grpc_port: grpc.insecure_channel(f"localhost:{i.grpc_port}")
                                       for i in self.plan.instances}

    def ping_serves(self, headers: list[tuple[bytes, bytes]]) -> bool:
        """tensorflow.md §8: a /ping naming a model or version (tfs-model-name, tfs-model-version) is healthy only
        when that one is served; every served version is AVAILABLE once the core reports ready."""
        raw = next((value.decode("latin-1") for name, value in headers
                    if name == b"x-amzn-sagemaker-custom-attributes"), None)
        if raw is None:
            return True
        try:
            attrs = attributes.parse_custom_attributes(raw)
        except ServingError:
            return False
        if attrs.model_name is None and attrs.model_version is None:
            return True
        name = attrs.model_name or self.plan.default_model
        model = next((m for m in self.plan.models if m.name == name), None)
        return model is not None and (attrs.model_version is None or int(attrs.model_version) in model.versions)

    # ------------------------------------------------------------ requests
    def invoke(self, request: InferenceRequest) -> InferenceResult:
        headers = {name.lower(): value for name, value in request.headers}
        try:
            attrs = attributes.parse_custom_attributes(headers.get("x-amzn-sagemaker-custom-attributes"))
            if self.functions:
                return self._with_handlers(request, headers, attrs)
            answer = self._forward(attrs, conversion.to_backend_body(request.body, request.content_type))
        except ServingError as exc:
            if exc.body_fields is None:  # every error of this family carries AWS's {"error": ...} too
                exc.body_fields = {"error": exc.message}
            raise
        return InferenceResult(conversion.one_line(answer), conversion.answer_content_type(headers.get("accept")))

    def _model_name(self, attrs) -> str:
        """The model a request is for: on a multi-model endpoint the one this server serves, named in the request's
        URL; else tfs-model-name, else the default model (tensorflow.md §6)."""
        return self.plan.default_model if self.plan.multi_model else attrs.model_name or self.plan.default_model

    def _forward(self, attrs, body: bytes) -> bytes:
        path = attributes.backend_path(self._model_name(attrs), attrs.model_version, attrs.method)
        status, answer, _ = self._post(self.instances.next(), path, body, self.settings.request_timeout.value)
        if status != 200:
            raise BackendError(status, answer)
        return answer

    def _post(self, instance, path: str, body: bytes, timeout: float) -> tuple[int, bytes, list]:
        """One backend call: the built-in backend's local channel where allowed, else keep-alive HTTP (http.client:
        requests adds ~0.5 ms a call for proxy and netrc lookups that loopback never needs)."""
        try:
            if self._channels:
                status, answer = self._channels[instance.local_socket].request("POST", path, body, timeout)
                return status, answer, [("Content-Type", JSON)]
            return self._http_post(instance.rest_port, path, body, timeout)
        except (ChannelUnavailable, ConnectionError, http.client.HTTPException) as exc:
            if self.plan.multi_model:  # never restarted: this server stops and its front unregisters the model
                from .multi_model import not_loaded_text, with_aws_text

                name = self.plan.default_model
                raise with_aws_text(ModelNotFound(f"model {name!r}: its TensorFlow backend tfs-{instance.index} is "
                                                  f"gone ({exc}); load the model again"),
                                    not_loaded_text(name)) from None
            raise Unavailable(f"TensorFlow backend tfs-{instance.index} is not serving ({exc}); it is restarted "
                              f"automatically: retry", "BackendUnavailable") from None

    def _http_post(self, port: int, path: str, body: bytes, timeout: float) -> tuple[int, bytes, list]:
        connections = getattr(self._local, "http", None)
        if connections is None:
            connections = self._local.http = {}
        for attempt in (0, 1):
            connection = connections.get(port)
            fresh = connection is None
            if fresh:
                connection = connections[port] = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
            try:
                connection.timeout = timeout
                connection.request("POST", path, body, {"Content-Type": JSON})
                response = connection.getresponse()
                return response.status, response.read(), response.getheaders()
            except (ConnectionError, http.client.HTTPException):
                connection.close()
                del connections[port]
                if fresh or attempt:  # a kept-alive connection may have been closed by the backend: retry once
                    raise
        raise AssertionError("unreachable")

    def _context(self, request: InferenceRequest, headers: dict[str, str], attrs) -> Context:
        """REST and gRPC instances are chosen independently at random, as AWS does; on a multi-model endpoint the
        model is the one in the URL and the gRPC port an int (AWS's types differ between the modes)."""
        rest = random.choice(self.plan.instances)
        grpc_instance = random.choice(self.plan.instances)
        length = headers.get("content-length")
        name = self._model_name(attrs)
        return Context(
            name if self.plan.multi_model else attrs.model_name, attrs.model_version, attrs.method,
            f"http://localhost:{rest.rest_port}{attributes.backend_path(name, attrs.model_version, attrs.method)}",
            grpc_instance.grpc_port if self.plan.multi_model else str(grpc_instance.grpc_port),
            self._grpc_channels.get(grpc_instance.grpc_port),
            headers.get("x-amzn-sagemaker-custom-attributes"),
            request.content_type or JSON, headers.get("accept") or JSON,
            int(length) if length and length.isdigit() else None, self.plan.context_timeout)

    def _with_handlers(self, request: InferenceRequest, headers: dict[str, str], attrs) -> InferenceResult:
        context = self._context(request, headers, attrs)
        data = io.BytesIO(request.body)
        functions = self.functions
        stage = "handler"
        try:
            if "handler" in functions:
                result = functions["handler"](data, context)
            else:
                if "input_handler" in functions:
                    stage = "input_handler"
                    payload = functions["input_handler"](data, context)
                else:
                    payload = conversion.to_backend_body(request.body, request.content_type)
                stage = "backend call"
                response = self._call_rest(context, payload)
                if response.status_code != 200:
                    raise BackendError(response.status_code, response.content)
                if "output_handler" not in functions:
                    return InferenceResult(response.content, response.headers.get("Content-Type") or JSON)
                stage = "output_handler"
                result = functions["output_handler"](response, context)
        except ServingError:
            raise
        except Exception as exc:  # noqa: BLE001 - the user's code: any failure becomes an answer, never a crash
            status = getattr(exc, "status_code", None)
            status = status if isinstance(status, int) and 400 <= status <= 599 else 500
            log.error("%s raised %s: %s", stage, type(exc).__name__, exc, exc_info=exc)
            raise HandlerError(str(exc) or type(exc).__name__, status) from None
        return _handler_result(result, "handler" if "handler" in functions else "output_handler")

    def _call_rest(self, context: Context, payload: Any) -> requests.Response:
        """The two-handler form's backend call, to context.rest_uri, answered as a requests.Response."""
        if isinstance(payload, (dict, list)):
            payload = orjson.dumps(payload)  # AWS hands a dict to requests, which form-encodes it
        elif isinstance(payload, str):
            payload = payload.encode("utf-8")
        elif payload is None:
            payload = b""
        elif not isinstance(payload, (bytes, bytearray, memoryview)):
            raise HandlerError(f"input_handler returned {type(payload).__name__}; return bytes, str, dict or list "
                               f"(the request body for {context.rest_uri})")
        url = urlsplit(context.rest_uri)
        status, body, headers = self._post(self._by_rest_port[url.port], url.path, bytes(payload), context.timeout)
        return _response(context.rest_uri, status, body, headers)


def _response(url: str, status: int, body: bytes, headers: list) -> requests.Response:
    """What `requests.post(url)` would have returned for this answer (status, headers, content, text, json())."""
    response = requests.Response()
    response.status_code = status
    response.reason = http.client.responses.get(status, "")
    response.headers = requests.structures.CaseInsensitiveDict(headers)
    response.encoding = requests.utils.get_encoding_from_headers(response.headers)
    response.url = url
    response._content = body
    return response


def _handler_result(result: Any, name: str) -> InferenceResult:
    if (isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], (str, bytes, bytearray))
            and isinstance(result[1], str)):
        body, content_type = result
        return InferenceResult(body.encode("utf-8") if isinstance(body, str) else bytes(body), content_type)
    raise HandlerError(f"{name} returned {type(result).__name__}; it must return a 2-tuple (body, content_type) "
                       f"with body str or bytes and content_type str")
