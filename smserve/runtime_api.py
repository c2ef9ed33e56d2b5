"""InvokeEndpoint and InvokeEndpointWithResponseStream as the SageMaker Runtime API answers them, for local
endpoint emulation: `POST /endpoints/{name}/invocations` and `.../invocations-response-stream` are served like
/invocations, so boto3's `invoke_endpoint` and `invoke_endpoint_with_response_stream` with `endpoint_url`
pointing at the container work unchanged.

On success the runtime adds the variant that served the request. A model answer of 4xx or 5xx reaches the
caller as the runtime reports it: 424 `ModelError` (the `x-amzn-errortype` header botocore reads the code
from) with the model's status and body as `OriginalStatusCode` and `OriginalMessage`, so client code written
for a real endpoint handles local errors the same way.
"""

from __future__ import annotations

import json
import struct
import zlib
from typing import Callable

ENDPOINT_ROUTE = "/endpoints/{name}/invocations"
ENDPOINT_STREAM_ROUTE = "/endpoints/{name}/invocations-response-stream"
VARIANT = b"AllTraffic"
MODEL_ERROR_STATUS = 424
_KEPT_ON_ERROR = (b"connection", b"retry-after", b"x-request-id", b"x-amzn-sagemaker-inference-id")


def model_error(status: int, body: bytes) -> bytes:
    original = body.decode("utf-8", "replace")
    kind = "client" if status < 500 else "server"
    return json.dumps({
        "ErrorCode": f"{kind.upper()}_ERROR_FROM_MODEL",
        "OriginalStatusCode": status,
        "OriginalMessage": original,
        "Message": f"Received {kind} error ({status}) from primary with message \"{original}\". See the "
                   f"container's log (docker logs) for more information.",
    }).encode()


def event_message(headers: list[tuple[str, str]], payload: bytes) -> bytes:
    """One message of the AWS event stream encoding (what botocore's EventStream reads): a prelude with the
    total and header lengths and its CRC32, string headers, the payload, and the CRC32 of all of it."""
    encoded = b"".join(struct.pack(">B", len(name)) + name.encode() + b"\x07" + struct.pack(">H", len(value))
                       + value.encode() for name, value in headers)
    prelude = struct.pack(">II", 16 + len(encoded) + len(payload), len(encoded))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + encoded + payload
    return message + struct.pack(">I", zlib.crc32(message))


def payload_part(data: bytes) -> bytes:
    return event_message([(":event-type", "PayloadPart"), (":content-type", "application/octet-stream"),
                          (":message-type", "event")], data)


def stream_error(message: str) -> bytes:
    body = json.dumps({"Message": message, "ErrorCode": "StreamBroken"}).encode()
    return event_message([(":exception-type", "ModelStreamError"), (":content-type", "application/json"),
                          (":message-type", "exception")], body)


def stream_request_headers(headers: list) -> list:
    """InvokeEndpointWithResponseStream sends Accept as X-Amzn-SageMaker-Accept; the model sees it as Accept."""
    accept = next((value for name, value in headers if name == b"x-amzn-sagemaker-accept"), None)
    if accept is None:
        return headers
    return [*[(name, value) for name, value in headers if name != b"accept"], (b"accept", accept)]


class RuntimeResponse:
    """`send` as the runtime answers. invoke_endpoint: the model's answer plus the variant header, a ModelError
    instead of a model error. invoke_endpoint_with_response_stream (`stream`): 200 with every body chunk as a
    PayloadPart event and the model's content type in X-Amzn-SageMaker-Content-Type; `abort_stream` ends a
    broken stream with a ModelStreamError event."""

    def __init__(self, send: Callable, request_id: str, stream: bool = False):
        self.send, self.request_id, self.stream = send, request_id, stream
        self.held_error: dict | None = None

    async def __call__(self, message: dict) -> None:
        if message["type"] == "http.response.start":
            if message["status"] >= 400:
                self.held_error = message
            elif self.stream:
                kept = [(n, v) for n, v in message["headers"] if n not in (b"content-type", b"content-length")]
                model_type = next((v for n, v in message["headers"] if n == b"content-type"), b"")
                await self.send({"type": "http.response.start", "status": 200, "headers": [
                    (b"content-type", b"application/vnd.amazon.eventstream"),
                    (b"x-amzn-sagemaker-content-type", model_type),
                    (b"x-amzn-invoked-production-variant", VARIANT), *kept]})
            else:
                await self.send({**message, "headers": [*message["headers"],
                                                        (b"x-amzn-invoked-production-variant", VARIANT)]})
            return
        if self.held_error is not None:
            await self._model_error(self.held_error, message.get("body", b""))
        elif self.stream:
            data, more = message.get("body", b""), message.get("more_body", False)
            if data:
                await self.send({"type": "http.response.body", "body": payload_part(data), "more_body": True})
            if not more:
                await self.send({"type": "http.response.body", "body": b"", "more_body": False})
        else:
            await self.send(message)

    async def abort_stream(self, reason: str) -> None:
        await self.send({"type": "http.response.body", "body": stream_error(reason), "more_body": True})

    async def _model_error(self, start: dict, original: bytes) -> None:
        self.held_error = None
        body = model_error(start["status"], original)
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                   (b"x-amzn-errortype", b"ModelError"), (b"x-amzn-requestid", self.request_id.encode("latin-1")),
                   *[(name, value) for name, value in start["headers"] if name in _KEPT_ON_ERROR]]
        await self.send({"type": "http.response.start", "status": MODEL_ERROR_STATUS, "headers": headers})
        await self.send({"type": "http.response.body", "body": body})
