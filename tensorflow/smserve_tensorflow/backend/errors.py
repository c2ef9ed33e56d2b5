"""One error type for the whole backend, carrying TF Serving's canonical status code, so REST, gRPC and the
batcher all derive their answer (HTTP status, gRPC code, message) from the same place."""

from __future__ import annotations

import enum


class Code(enum.Enum):
    """Canonical codes (tensorflow/core/protobuf/error_codes.proto); the value is the gRPC/absl number."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


# tensorflow_serving/model_servers/http_server.cc ToHTTPStatusCode (spec §9.6).
HTTP_STATUS_BY_CODE: dict[Code, int] = {
    Code.OK: 200,
    Code.CANCELLED: 499,
    Code.UNKNOWN: 500,
    Code.INVALID_ARGUMENT: 400,
    Code.DEADLINE_EXCEEDED: 504,
    Code.NOT_FOUND: 404,
    Code.ALREADY_EXISTS: 409,
    Code.PERMISSION_DENIED: 403,
    Code.RESOURCE_EXHAUSTED: 429,
    Code.FAILED_PRECONDITION: 400,
    Code.ABORTED: 409,
    Code.OUT_OF_RANGE: 400,
    Code.UNIMPLEMENTED: 501,
    Code.INTERNAL: 500,
    Code.UNAVAILABLE: 503,
    Code.DATA_LOSS: 500,
    Code.UNAUTHENTICATED: 401,
}


class BackendError(Exception):
    """A failed request: `code` picks the HTTP/gRPC status, `message` is the exact TF Serving text."""

    def __init__(self, code: Code, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        return HTTP_STATUS_BY_CODE.get(self.code, 500)

    def status_text(self) -> str:
        """absl::Status::ToString() form, which TF Serving nests inside element errors."""
        return f"{self.code.name}: {self.message}"

    def __repr__(self) -> str:
        return f"BackendError({self.code.name}, {self.message!r})"


def invalid_argument(message: str) -> BackendError:
    return BackendError(Code.INVALID_ARGUMENT, message)


def not_found(message: str) -> BackendError:
    return BackendError(Code.NOT_FOUND, message)


# TensorFlow's OpError subclasses carry the same numbering; mapping by number avoids importing TensorFlow here.
def code_from_number(number: int) -> Code:
    try:
        return Code(number)
    except ValueError:
        return Code.UNKNOWN
