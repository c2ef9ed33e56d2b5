"""Error types and the single mapping from exceptions to HTTP error responses (spec core §11)."""

from __future__ import annotations

import json
import traceback
from http import HTTPStatus


class ConfigError(Exception):
    """An environment variable or option has a value smserve cannot accept; startup exits with status 2."""

    exit_status = 2

    def __init__(self, variable: str, value: str, accepted: str):
        self.variable, self.value, self.accepted = variable, value, accepted
        super().__init__(f"invalid value for {variable}: {value!r}; accepted: {accepted}")


class FamilyError(ConfigError):
    """The family to serve cannot be chosen or is not installed; startup exits with status 2, one line."""

    def __init__(self, message: str):
        Exception.__init__(self, message)
        self.variable, self.value, self.accepted = "SMSERVE_FAMILY", "", ""


class NeuronCoreError(ConfigError):
    """inf1: the processes ask for more NeuronCores than the instance has (neo.md §9.2); exit status 2, one line."""

    def __init__(self, variable: str, value: str, message: str):
        Exception.__init__(self, message)
        self.variable, self.value, self.accepted = variable, value, ""


class StartupError(Exception):
    """A problem with the model archive, user code or environment found before serving; exit status 1."""

    exit_status = 1


class RequirementsError(StartupError):
    """pip could not install code/requirements.txt; exit status 3 (spec core §6)."""

    exit_status = 3


class ServingError(Exception):
    """An error with a definite HTTP status, raised anywhere on the request path."""

    status = 500
    error_type = "InternalServerError"
    request_bytes = 0  # body bytes read before the error, for the access log and metrics
    close_connection = False  # answered before the body was read: the connection cannot be reused
    body_fields: dict | None = None  # family fields added to the error body (TF Serving's "error")

    def __init__(self, message: str, *, status: int | None = None, error_type: str | None = None):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if error_type is not None:
            self.error_type = error_type


class BadRequest(ServingError):
    status, error_type = 400, "BadRequest"


class PickleRejected(BadRequest):
    error_type = "PickleRejected"


class RouteNotFound(ServingError):
    status, error_type = 404, "RouteNotFound"


class ModelNotFound(ServingError):
    status, error_type = 404, "ModelNotFound"


class MethodNotAllowed(ServingError):
    status, error_type = 405, "MethodNotAllowed"

    def __init__(self, message: str, allow: tuple[str, ...]):
        super().__init__(message)
        self.allow = allow


class NotAcceptable(ServingError):
    status, error_type = 406, "NotAcceptable"


class PayloadTooLarge(ServingError):
    status, error_type = 413, "PayloadTooLarge"
    close_connection = True


class DecodedTooLarge(ServingError):
    """A body within the payload limit whose decoded form would not be (codecs.decoded_bound)."""

    status, error_type = 413, "DecodedTooLarge"


class UnsupportedMediaType(ServingError):
    status, error_type = 415, "UnsupportedMediaType"


class EncodeError(ServingError):
    status, error_type = 500, "EncodeError"


class ResponseTooLarge(ServingError):
    status, error_type = 500, "ResponseTooLarge"


class Unavailable(ServingError):
    """503 answers (NotReady, Overloaded, ShuttingDown) always carry Retry-After: 1."""

    status = 503

    def __init__(self, message: str, error_type: str):
        super().__init__(message, error_type=error_type)


class DeadlineExceeded(ServingError):
    status, error_type = 504, "DeadlineExceeded"


# multi-model endpoints (core §13.2, §13.5)
class Conflict(ServingError):
    status, error_type = 409, "Conflict"


class LoadTimeout(ServingError):
    status, error_type = 408, "LoadTimeout"


class InsufficientMemory(ServingError):
    status, error_type = 507, "InsufficientMemory"


class ModelNotLoadable(ServingError):
    status, error_type = 500, "ModelLoadError"


class RequirementsInstallError(ServingError):
    status, error_type = 500, "RequirementsInstallError"


class WorkerDied(ServingError):
    status, error_type = 500, "WorkerDied"


class UnsupportedFormatError(Exception):
    """Raised by codecs and hooks for a media type they cannot handle.

    Its status depends on where it escapes: 415 from input handling, 406 from output handling
    (spec core §11.3). Same name as the toolkit's class so user code reads naturally."""

    def __init__(self, content_type: str, message: str | None = None):
        self.content_type = content_type
        super().__init__(message or f"Content type {content_type} is not supported by this inference endpoint.")


# Stages of the request pipeline, for mapping UnsupportedFormatError and decode errors.
STAGE_INPUT = "input"
STAGE_PREDICT = "predict"
STAGE_OUTPUT = "output"


def _is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    name = type(exc).__name__
    return name == "OutOfMemoryError" or (isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower())


def classify(exc: BaseException, stage: str | None) -> tuple[int, str, str]:
    """Return (status, type, message) for an exception escaping user or default code.

    Status propagation is duck-typed on `status_code` so exceptions of the real
    sagemaker-inference toolkit map the same way as ours (spec core §7.7, §11.3)."""
    if isinstance(exc, ServingError):
        return exc.status, exc.error_type, exc.message
    status_code = getattr(exc, "status_code", None)
    if isinstance(status_code, int) and not isinstance(status_code, bool) and 400 <= status_code <= 599:
        message = getattr(exc, "message", None)
        if not isinstance(message, str) or not message:
            message = str(exc) or HTTPStatus(status_code).phrase
        return status_code, type(exc).__name__, message
    if type(exc).__name__ == "UnsupportedFormatError":
        status = 406 if stage == STAGE_OUTPUT else 415
        return status, "NotAcceptable" if status == 406 else "UnsupportedMediaType", str(exc)
    if stage == STAGE_INPUT and isinstance(exc, (json.JSONDecodeError, UnicodeDecodeError)):
        return 400, "BadRequest", str(exc)
    if _is_out_of_memory(exc):
        return 500, "OutOfMemory", str(exc) or "out of memory"
    return 500, type(exc).__name__, str(exc) or "Internal error"


def error_body(status: int, error_type: str, message: str, request_id: str, exc: BaseException | None = None,
               debug: bool = False, fields: dict | None = None) -> bytes:
    body = {"code": status, "type": error_type, "message": message, "request_id": request_id}
    if fields:
        body.update(fields)
    if debug and exc is not None:
        body["traceback"] = "".join(traceback.format_exception(exc))
    return json.dumps(body).encode()
