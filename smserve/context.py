"""The per-request Context given to hooks that ask for one (spec core §7.5).

Shaped like the TorchServe/MMS `Context` AWS passes, so user code written for AWS keeps working;
`idx` is always 0 because smserve hands each request to the hooks on its own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterator

from . import __version__

CUSTOM_ATTRIBUTES = "x-amzn-sagemaker-custom-attributes"
_VISIBLE_ASCII = re.compile(r"^[\x20-\x7e]*$")
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")  # an HTTP token (RFC 9110 §5.1)
_HEADER_VALUE = re.compile(r"^[\t\x20-\x7e\x80-\xff]*$")  # visible latin-1, spaces and tabs (RFC 9110 §5.5)


@dataclass
class InferenceRequest:
    body: bytes
    content_type: str | None  # raw header value, None when missing
    accept: str  # effective Accept (spec core §10)
    headers: list[tuple[str, str]]  # original casing and order
    request_id: str
    model_name: str = "model"


@dataclass
class InferenceResult:
    body: bytes
    content_type: str
    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    chunks: Iterator[bytes] | None = None  # a streamed answer: body is empty, each next() runs the user's generator


@dataclass(frozen=True)
class WorkerInfo:
    """What the worker knows about itself, shared by every request's context."""

    model_dir: str
    gpu_id: int | None  # index among the worker's visible GPUs
    physical_gpu_id: int | None  # index on the host
    model_name: str = "model"


class RequestProcessor:
    def __init__(self, context: "Context"):
        self._context = context

    def get_request_header(self, name: str) -> str | None:
        return self._context.get_request_header(0, name)

    def get_request_properties(self) -> dict[str, str]:
        return dict(self._context.get_all_request_header(0))

    def add_response_property(self, name: str, value: str) -> None:
        self._context.set_response_header(0, name, value)

    def report_status(self, code: int, reason: str | None = None) -> None:
        self._context.set_response_status(code, reason or "")


class Metrics:
    """Collects `context.metrics.add_*` calls; the worker exports them as smserve_user_<name>."""

    def __init__(self, sink):
        self._sink = sink

    def add_metric(self, name: str, value: float, unit: str = "", idx: Any = None, dimensions: Any = None, **_: Any):
        self._sink(name, float(value), unit)

    def add_counter(self, name: str, value: float = 1, idx: Any = None, dimensions: Any = None, **_: Any):
        self._sink(name, float(value), "count")

    def add_time(self, name: str, value: float, idx: Any = None, unit: str = "ms", dimensions: Any = None, **_: Any):
        self._sink(name, float(value), unit)

    def add_size(self, name: str, value: float, idx: Any = None, unit: str = "MB", dimensions: Any = None, **_: Any):
        self._sink(name, float(value), unit)

    def add_percent(self, name: str, value: float, idx: Any = None, dimensions: Any = None, **_: Any):
        self._sink(name, float(value), "percent")


class Context:
    def __init__(self, worker: WorkerInfo, request: InferenceRequest, metrics_sink=None):
        self._request = request
        self._headers_lower = {k.lower(): v for k, v in request.headers}
        self.system_properties = {
            "model_dir": worker.model_dir,
            "gpu_id": worker.gpu_id,
            "physical_gpu_id": worker.physical_gpu_id,
            "batch_size": 1,
            "server_name": "smserve",
            "server_version": __version__,
            "limit_max_image_pixels": True,
        }
        self.model_name = worker.model_name
        self.manifest = {"model": {"modelName": worker.model_name, "modelVersion": "1.0"}}
        self.request_ids = {0: request.request_id}
        self.request_processor = [RequestProcessor(self)]
        self.metrics = Metrics(metrics_sink or (lambda *a: None))
        self.response_headers: dict[str, str] = {}
        self.response_content_type: str | None = None
        self.response_status: tuple[int, str] | None = None

    # smserve additions
    @property
    def request_id(self) -> str:
        return self._request.request_id

    @property
    def custom_attributes(self) -> str | None:
        return self._headers_lower.get(CUSTOM_ATTRIBUTES)

    @property
    def target_model(self) -> str | None:
        return self._headers_lower.get("x-amzn-sagemaker-target-model")

    @property
    def target_variant(self) -> str | None:
        return self._headers_lower.get("x-amzn-sagemaker-target-variant")

    @property
    def inference_id(self) -> str | None:
        return self._headers_lower.get("x-amzn-sagemaker-inference-id")

    # TorchServe/MMS-compatible methods
    def get_request_id(self, idx: int = 0) -> str:
        return self._request.request_id

    def get_request_header(self, idx: int, key: str) -> str | None:
        return self._headers_lower.get(key.lower())

    def get_all_request_header(self, idx: int = 0) -> dict[str, str]:
        return dict(self._request.headers)

    def set_response_header(self, idx: int, key: str, value: str) -> None:
        self.response_headers[key] = str(value)

    def get_response_headers(self, idx: int = 0) -> dict[str, str]:
        return self.response_headers

    def set_response_content_type(self, idx: int, value: str) -> None:
        self.response_content_type = value

    def get_response_content_type(self, idx: int = 0) -> str | None:
        return self.response_content_type

    def set_response_status(self, code: int = 200, phrase: str = "", idx: int = 0) -> None:
        self.response_status = (int(code), phrase)

    def set_all_response_status(self, code: int = 200, phrase: str = "") -> None:
        self.set_response_status(code, phrase)

    def get_response_status(self, idx: int = 0) -> tuple[int, str] | None:
        return self.response_status


def sendable_header_value(value: str) -> bool:
    """True when `value` can be sent as an HTTP header value (no control characters, latin-1 only)."""
    return _HEADER_VALUE.match(value) is not None


def response_headers(context: Context, warn) -> list[tuple[str, str]]:
    """Headers a hook set, with the custom-attributes rule: forwarded only if <= 1024 visible ASCII."""
    out = []
    for name, value in context.response_headers.items():
        if name.lower() == CUSTOM_ATTRIBUTES and (len(value) > 1024 or not _VISIBLE_ASCII.match(value)):
            warn(f"dropping response header {name}: more than 1024 characters or not visible ASCII")
            continue
        if "\n" in value or "\r" in value:
            warn(f"dropping response header {name!r}: contains a line break")
            continue
        if not _HEADER_NAME.match(name):
            warn(f"dropping response header {name!r}: a header name is letters, digits and !#$%&'*+-.^_`|~ only")
            continue
        if not sendable_header_value(value):
            warn(f"dropping response header {name!r}: its value holds a control character or a character "
                 f"outside latin-1 (encode it, e.g. percent-encoding)")
            continue
        out.append((name, value))
    return out
