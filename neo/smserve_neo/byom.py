"""The BYOM contract of AWS's Neo images (neo.md §4): `neo_preprocess(payload, content_type)` → DLR →
`neo_postprocess(result)` → `(body, content_type)`, with AWS's payload decoding and `ClientError` texts.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Callable

import numpy as np

from smserve import codecs
from smserve.context import InferenceRequest, InferenceResult
from smserve.errors import STAGE_INPUT, STAGE_OUTPUT, BadRequest, ServingError, UnsupportedMediaType
from smserve.pipeline import HookFailure

from .runtime import ClientError, Runtime

log = logging.getLogger("smserve.neo")

INTERNAL_ERROR = "Internal Server Error occured"  # AWS's spelling (neo.md §4.3)


def mms_payload(body: bytes, content_type: str) -> Any:
    """MMS's default request decoding, on the exact header value: JSON parsed, text as str, else bytes."""
    if content_type == codecs.JSON:
        try:
            return json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadRequest(f"the body is not valid JSON ({exc}); neo_preprocess receives application/json "
                             f"parsed") from None
    if content_type.startswith("text"):
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadRequest(f"a {content_type} body must be UTF-8 ({exc})") from None
    return body


def generic_preprocess(payload: Any, content_type: str) -> Any:
    """The generic app's decoding, for a script that defines only neo_postprocess."""
    if isinstance(payload, (bytes, str)):
        decoded = codecs.decode(payload, content_type)
    elif isinstance(payload, dict):
        return {name: np.asarray(value) for name, value in payload.items()}
    else:
        decoded = np.asarray(payload)
    return decoded


def generic_postprocess(result: Any) -> tuple[bytes, str]:
    """The generic app's JSON answer, for a script that defines only neo_preprocess."""
    return codecs.encode_json(result), codecs.JSON


def _names(names) -> str:
    return "{" + ", ".join(repr(n) for n in sorted(names)) + "}"


def bind_inputs(data: Any, input_names: list[str]) -> Any:
    """What neo_preprocess returned, checked against the model's inputs with AWS's texts (§4.2)."""
    if isinstance(data, (np.ndarray, np.generic)):
        if len(input_names) != 1:
            raise ClientError("User-defined pre-processing function returns a single input, but the model has "
                              "multiple inputs.")
        return {input_names[0]: np.asarray(data)}
    if isinstance(data, dict):
        given, expected = set(data), set(input_names)
        if given != expected:
            lines = [f"Input name(s) mismatch: {_names(given)} {_names(expected)}"]
            if expected - given:
                lines.append(f"Expected {', '.join(sorted(expected - given))} in input data")
            if given - expected:
                lines.append(f"The model does not accept the following inputs: {', '.join(sorted(given - expected))}")
            raise ClientError("\n".join(lines))
        return {name: np.asarray(value) for name, value in data.items()}
    raise ClientError("User-defined pre-processing function must return either dict type or np.ndarray")


def _client_text(exc: BaseException) -> str | None:
    text = str(exc)
    return text if text.startswith("ClientError:") else None


def _internal(exc: BaseException, stage: str) -> HookFailure:
    """500 with AWS's text; the server logs the original exception with the request id."""
    failure = HookFailure(exc, stage)
    failure.status, failure.error_type, failure.message = 500, "InternalServerError", INTERNAL_ERROR
    return failure


class ByomHandler:
    def __init__(self, load_runtime: Callable[[], Runtime], preprocess: Callable | None,
                 postprocess: Callable | None):
        self.load_runtime = load_runtime
        self.preprocess = preprocess or generic_preprocess
        self.postprocess = postprocess or generic_postprocess
        self.runtime: Runtime | None = None

    def load(self) -> None:
        self.runtime = self.load_runtime()

    def invoke(self, request: InferenceRequest) -> InferenceResult:
        content_type = request.content_type
        if content_type is None:
            raise UnsupportedMediaType("Content-Type header is required")
        payload = mms_payload(request.body, content_type)
        try:
            data = self.preprocess(payload, content_type)
        except ServingError:
            raise
        except Exception as exc:  # the user's code failed on this input
            raise ClientError(_client_text(exc) or f"User-defined pre-processing function failed:\n{exc}") \
                from exc
        inputs = bind_inputs(data, self.runtime.input_names)
        try:
            outputs = self.runtime.run(inputs)
        except ServingError:
            raise
        except Exception as exc:  # noqa: BLE001 - a runtime failure that is not the input's fault
            raise _internal(exc, STAGE_INPUT) from exc
        result = outputs[0] if len(outputs) == 1 else outputs
        try:
            answer = self.postprocess(result)
        except Exception as exc:
            text = _client_text(exc)
            if text:
                raise ClientError(text) from exc
            raise _internal(exc, STAGE_OUTPUT) from exc
        if not (isinstance(answer, tuple) and len(answer) == 2):
            raise _internal(TypeError(f"neo_postprocess must return (body, content_type), got "
                                      f"{type(answer).__name__}"), STAGE_OUTPUT)
        body, response_type = answer
        if isinstance(body, str):
            body = body.encode("utf-8")
        elif isinstance(body, (bytearray, memoryview)):
            body = bytes(body)
        elif not isinstance(body, bytes):
            body = codecs.encode_json(body)
        return InferenceResult(body, str(response_type))
