"""InvokeEndpoint as the SageMaker Runtime API answers it, for local endpoint emulation: `POST
/endpoints/{name}/invocations` is served like /invocations, so boto3's `invoke_endpoint` with `endpoint_url`
pointing at the container works unchanged.

On success the runtime adds the variant that served the request. A model answer of 4xx or 5xx reaches the
caller as the runtime reports it: 424 `ModelError` (the `x-amzn-errortype` header botocore reads the code
from) with the model's status and body as `OriginalStatusCode` and `OriginalMessage`, so client code written
for a real endpoint handles local errors the same way.
"""

from __future__ import annotations

import json
from typing import Callable

ENDPOINT_ROUTE = "/endpoints/{name}/invocations"
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


def runtime_send(send: Callable, request_id: str) -> Callable:
    """`send` as the runtime answers: the variant header on success, a ModelError instead of a model error.
    smserve sends a response as one start and one body message."""
    held: dict = {}

    async def wrapped(message: dict) -> None:
        if message["type"] == "http.response.start":
            if message["status"] < 400:
                await send({**message, "headers": [*message["headers"],
                                                   (b"x-amzn-invoked-production-variant", VARIANT)]})
            else:
                held["start"] = message
            return
        start = held.pop("start", None)
        if start is None:
            await send(message)
            return
        body = model_error(start["status"], message.get("body", b""))
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                   (b"x-amzn-errortype", b"ModelError"), (b"x-amzn-requestid", request_id.encode("latin-1")),
                   *[(name, value) for name, value in start["headers"] if name in _KEPT_ON_ERROR]]
        await send({"type": "http.response.start", "status": MODEL_ERROR_STATUS, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return wrapped
