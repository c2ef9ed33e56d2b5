"""The ASGI application every worker runs: routes, limits, deadlines, errors, metrics (spec core §2–§4, §11).

Health, metrics and routing run on the event loop; hooks run on the worker's thread pool, so /ping
answers while every thread is busy predicting.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import threading
import time
from typing import Any, Callable
from urllib.parse import parse_qs

from . import __version__
from .config import Settings
from .context import InferenceRequest, InferenceResult
from .errors import (DeadlineExceeded, MethodNotAllowed, ModelNotFound, PayloadTooLarge, ResponseTooLarge,
                     RouteNotFound, ServingError, Unavailable, error_body)
from .executor import JobExpired, PredictThreads
from .logs import AccessLog, printable
from .negotiation import effective_accept
from .pipeline import HookFailure
from .runtime_api import ENDPOINT_ROUTE, ENDPOINT_STREAM_ROUTE, RuntimeResponse, stream_request_headers
from .state import BUSY, DRAINING, READY, SharedState, now

log = logging.getLogger("smserve.server")

JSON_TYPE = b"application/json"
PING_OK = b'{"status":"Healthy"}'
SINGLE_MODEL = "model"

# Routes that exist in this mode, for 405 answers: path pattern -> allowed methods
ROUTE_METHODS = {
    "/invocations": ("POST",),
    "/execution-parameters": ("GET",),
    "/metrics": ("GET",),
}
UNMATCHED_ROUTE = "unmatched"  # the metrics label of every path that is no route (labels are a closed set)


def route_label(path: str) -> str:
    """The metrics label of a request path: a route pattern, never the path itself (a client choosing label
    values could grow /metrics without bound)."""
    if path in ROUTE_METHODS:
        return path
    if path.startswith("/models/") and path.endswith("/invoke"):
        return "/models/{name}/invoke"
    if path.startswith("/predictions/"):
        return "/predictions/{name}"
    if path.startswith("/endpoints/"):
        if path.endswith("/invocations"):
            return ENDPOINT_ROUTE
        if path.endswith("/invocations-response-stream"):
            return ENDPOINT_STREAM_ROUTE
    return UNMATCHED_ROUTE


class Handler:  # the shape of families.base.Handler, repeated here to avoid an import cycle
    def invoke(self, request: InferenceRequest) -> InferenceResult: ...


class App:
    def __init__(self, settings: Settings, state: SharedState, slot: int, access_log: AccessLog,
                 metrics: Any, build_info: dict[str, str], extra_routes: tuple[str, ...] = ("predictions",)):
        self.settings = settings
        self.state = state
        self.slot = slot
        self.access_log = access_log
        self.metrics = metrics
        self.build_info = build_info
        self.handler: Handler | None = None
        self.predict_threads = PredictThreads(settings.worker_threads)
        self.capacity = settings.worker_threads + settings.max_queue
        self.inflight = 0
        self.timeout = settings.request_timeout.value
        self.limit = settings.max_request_bytes.value
        self.limit_source = settings.max_request_bytes.source
        self.predictions_alias = "predictions" in extra_routes
        self._running: dict[int, float] = {}
        self._running_lock = threading.Lock()
        self.draining = False

    # ------------------------------------------------------------ ASGI entry
    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return
        started = time.perf_counter()
        path: str = scope["path"]
        method: str = scope["method"]
        headers = scope["headers"]
        request_id, echo = request_id_of(headers)
        if path == "/ping":
            await self._ping(method, headers, send, request_id, echo)
            return
        route = route_label(path)
        status, sent_bytes, received, model, broken = 500, 0, 0, SINGLE_MODEL, None
        try:
            if path == "/invocations" or path.startswith(("/models/", "/predictions/", "/endpoints/")):
                route, model = self._route_invocation(path, method, scope.get("query_string", b""))
                if route in (ENDPOINT_ROUTE, ENDPOINT_STREAM_ROUTE):
                    stream = route == ENDPOINT_STREAM_ROUTE
                    send = RuntimeResponse(send, request_id, stream)
                    if stream:
                        headers = stream_request_headers(headers)
                status, sent_bytes, received = await self._invoke(route, headers, receive, send, request_id, echo,
                                                                  started)
            elif path == "/metrics" and method == "GET" and self.settings.metrics:
                status, sent_bytes = await self._metrics(send, echo)
            elif path == "/execution-parameters" and method == "GET":
                status, sent_bytes = await self._execution_parameters(send, echo)
            else:
                self._raise_unrouted(path, method)
        except ServingError as exc:
            received = exc.request_bytes
            status, sent_bytes = await self._send_error(send, exc, request_id, echo)
        except StreamBroken as exc:
            broken, status, sent_bytes, received = exc, exc.status, exc.sent, exc.received
        elapsed = time.perf_counter() - started
        if self.metrics is not None:
            self.metrics.observe_request(route, method, status, model, elapsed, received, sent_bytes)
        self.access_log.record(method, path, status, elapsed * 1000, received, sent_bytes, request_id, model)
        if broken is not None:
            raise broken  # uvicorn closes the connection without the final chunk

    def record_refusal(self, status: int, sent_bytes: int, request_id: str) -> None:
        """Account for an answer the connection layer wrote itself (protocol.py: 400, 408, 431, 503)."""
        if self.metrics is not None:
            self.metrics.observe_request(UNMATCHED_ROUTE, "-", status, SINGLE_MODEL, 0.0, 0, sent_bytes)
        self.access_log.record("-", "-", status, 0.0, 0, sent_bytes, request_id, SINGLE_MODEL)

    def _raise_unrouted(self, path: str, method: str) -> None:
        allowed = ROUTE_METHODS.get(path)
        if path == "/metrics" and not self.settings.metrics:
            allowed = None
        if allowed and method not in allowed:
            raise MethodNotAllowed(f"{method} is not allowed on {path}; use {', '.join(allowed)}", allowed)
        raise RouteNotFound(f"no route for {method} {path}")

    def _route_invocation(self, path: str, method: str, query: bytes) -> tuple[str, str]:
        """Return (route label, model name) or raise 404/405."""
        if path == "/invocations":
            if method != "POST":
                raise MethodNotAllowed(f"{method} is not allowed on /invocations; use POST", ("POST",))
            if query:
                names = parse_qs(query.decode("latin-1")).get("model_name")
                if names and names[0] != SINGLE_MODEL:
                    raise ModelNotFound(f"model {names[0]!r} is not loaded; this endpoint serves one model "
                                        f"named {SINGLE_MODEL!r}")
            return "/invocations", SINGLE_MODEL
        parts = path.strip("/").split("/")
        if parts[0] == "models" and len(parts) == 3 and parts[2] == "invoke":
            name, route = parts[1], "/models/{name}/invoke"
        elif parts[0] == "predictions" and self.predictions_alias and len(parts) in (2, 3):
            name, route = parts[1], "/predictions/{name}"
        elif parts[0] == "endpoints" and len(parts) == 3 and parts[2] in ("invocations", "invocations-response-stream"):
            # any endpoint name: the container is the endpoint
            name, route = SINGLE_MODEL, ENDPOINT_ROUTE if parts[2] == "invocations" else ENDPOINT_STREAM_ROUTE
        else:
            raise RouteNotFound(f"no route for {method} {path}")
        if method != "POST":
            raise MethodNotAllowed(f"{method} is not allowed on {path}; use POST", ("POST",))
        if name != SINGLE_MODEL:
            raise ModelNotFound(f"model {name!r} is not loaded; this endpoint serves one model named "
                                f"{SINGLE_MODEL!r}")
        return route, SINGLE_MODEL

    # ------------------------------------------------------------ /ping
    async def _ping(self, method: str, headers: list, send: Callable, request_id: str, echo: list) -> None:
        ready = self.state.ready() and not self.draining
        # a family whose ping may name a model (TensorFlow's tfs-model-name, tensorflow.md §8) says if it serves it
        serves = ready and getattr(self.handler, "ping_serves", None)
        model_missing = bool(serves) and not serves(headers)
        if ready and not model_missing:
            await respond(send, 200, PING_OK, JSON_TYPE, echo)
            if self.settings.log_ping:
                self.access_log.record(method, "/ping", 200, 0.0, 0, len(PING_OK), request_id, SINGLE_MODEL)
            return
        draining = self.draining or self.state.phase == DRAINING
        reason = "ShuttingDown" if draining else "ModelNotAvailable" if model_missing else "NotReady"
        body = b'{"status":"Unhealthy","reason":"%s"}' % reason.encode()
        await respond(send, 503, body, JSON_TYPE, [(b"retry-after", b"1"), *echo])
        if self.settings.log_ping:
            self.access_log.record(method, "/ping", 503, 0.0, 0, len(body), request_id, SINGLE_MODEL)

    # ------------------------------------------------------------ inference
    async def _invoke(self, route: str, headers: list, receive: Callable, send: Callable, request_id: str,
                      echo: list, started: float) -> tuple[int, int, int]:
        if self.draining or self.state.phase == DRAINING:
            raise Unavailable("the server is shutting down", "ShuttingDown")
        if self.handler is None or not self.state.ready():
            raise Unavailable("the model is not loaded yet; retry when /ping returns 200", "NotReady")
        content_type = accept = None
        length = None
        for name, value in headers:
            if name == b"content-type":
                content_type = value.decode("latin-1")
            elif name == b"accept":
                accept = value.decode("latin-1")
            elif name == b"content-length":
                length = int(value) if value.isdigit() else None
        if length is not None and length > self.limit:
            raise self._too_large(length)
        # admission before the body is read: a full worker answers 503 at once instead of reading bodies
        if self.inflight >= self.capacity:
            exc = Unavailable(f"worker queue is full ({self.capacity} requests); retry later", "Overloaded")
            exc.close_connection = True
            raise exc
        self.inflight += 1
        if self.metrics is not None:
            self.metrics.inflight_child.inc()
        try:
            try:
                body = await self._read_body(receive, started)
            except ServingError as exc:
                exc.close_connection = True  # the rest of the body may still be on its way
                raise
            try:
                return await self._answer(body, content_type, accept, headers, send, request_id, echo, started)
            except ServingError as exc:
                exc.request_bytes = len(body)
                raise
        finally:
            self.inflight -= 1
            if self.metrics is not None:
                self.metrics.inflight_child.dec()

    async def _answer(self, body: bytes, content_type: str | None, accept: str | None, headers: list,
                      send: Callable, request_id: str, echo: list, started: float) -> tuple[int, int, int]:
        request = InferenceRequest(body, content_type, effective_accept(accept, self.settings.default_accept),
                                   [(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers], request_id)
        result = await self._run(request, started)
        if result.chunks is not None:
            try:
                status, sent = await self._stream(result, send, echo, request_id)
            except StreamBroken as exc:
                exc.received = len(body)
                raise
            return status, sent, len(body)
        if self.settings.response_max_bytes and len(result.body) > self.settings.response_max_bytes:
            raise ResponseTooLarge(f"response of {len(result.body)} bytes exceeds SMSERVE_RESPONSE_MAX_BYTES="
                                   f"{self.settings.response_max_bytes}")
        length = [(b"content-length", str(len(result.body)).encode())]
        await send({"type": "http.response.start", "status": result.status,
                    "headers": _answer_headers(result, [*length, *echo])})
        await send({"type": "http.response.body", "body": result.body})
        return result.status, len(result.body), len(body)

    def _too_large(self, size: int) -> PayloadTooLarge:
        return PayloadTooLarge(f"request body of {size} bytes exceeds the limit of {self.limit} bytes "
                               f"({self.limit_source}); raise it with SAGEMAKER_MAX_PAYLOAD_IN_MB")

    async def _read_body(self, receive: Callable, started: float) -> bytes:
        """The request body, within the request deadline (which runs from the end of the headers). When the
        whole body arrived with the headers (uvicorn's cycle says so), no timer is needed."""
        cycle = getattr(receive, "__self__", None)
        if getattr(cycle, "more_body", True) is False:
            return (await receive()).get("body", b"")
        try:
            async with asyncio.timeout(self.timeout - (time.perf_counter() - started)):
                return await self._receive_all(receive)
        except TimeoutError:
            raise DeadlineExceeded(f"the request body did not arrive within the request deadline of "
                                   f"{self.timeout:g} s ({self.settings.request_timeout.source})") from None

    async def _receive_all(self, receive: Callable) -> bytes:
        message = await receive()
        chunks, size = [message.get("body", b"")], len(message.get("body", b""))
        while message.get("more_body"):
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                raise self._too_large(size)
            chunks.append(chunk)
        return b"".join(chunks)

    async def _run(self, request: InferenceRequest, started: float) -> InferenceResult:
        return await self._on_predict_thread(self.handler.invoke, request, started, "answer")

    async def _on_predict_thread(self, call: Callable, argument: Any, started: float, what: str) -> Any:
        submitted = time.perf_counter()
        job = self.predict_threads.submit(self._execute, call, argument, submitted,
                                          timeout=self.timeout - (submitted - started))
        try:
            return await job.result()
        except JobExpired:
            raise DeadlineExceeded(f"no {what} within the request deadline of {self.timeout:g} s "
                                   f"({self.settings.request_timeout.source}); the result will be discarded") \
                from None

    async def _stream(self, result: InferenceResult, send: Callable, echo: list, request_id: str) -> tuple[int, int]:
        """A hook's generator as a chunked response: each next() on a predict thread, each chunk within the request
        deadline from the previous one. A failure after the first chunk cannot change the status any more: the
        connection is cut (the client sees an incomplete response), or the runtime stream route sends its
        error event (runtime_api)."""
        await send({"type": "http.response.start", "status": result.status, "headers": _answer_headers(result, echo)})
        sent = 0
        try:
            while True:
                chunk = await self._on_predict_thread(_next_chunk, result.chunks, time.perf_counter(), "next chunk")
                if chunk is None:
                    break
                cap = self.settings.response_max_bytes
                if cap and sent + len(chunk) > cap:
                    raise ResponseTooLarge(f"the streamed answer exceeds SMSERVE_RESPONSE_MAX_BYTES={cap}")
                if chunk:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    sent += len(chunk)
        except ServingError as exc:
            log.error("the streamed answer failed after %d bytes: %s", sent, printable(exc.message),
                      exc_info=exc.original if isinstance(exc, HookFailure) else None,
                      extra={"kv": {"request_id": request_id}})
            abort = getattr(send, "abort_stream", None)
            if abort is None:
                raise StreamBroken(exc.message, result.status, sent) from None
            await abort(exc.message)
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return result.status, sent

    def _execute(self, call: Callable, argument: Any, submitted: float) -> Any:
        """Runs on a predict thread; marks the worker busy for the hung-worker watchdog."""
        begun = time.perf_counter()
        if self.metrics is not None:
            self.metrics.observe_stage("queue", begun - submitted)
        key = threading.get_ident()
        with self._running_lock:
            self._running[key] = now()
            self.state.set_busy_since(self.slot, min(self._running.values()))
            self.state.set_worker_state(self.slot, BUSY)
        try:
            return call(argument)
        finally:
            with self._running_lock:
                del self._running[key]
                if self._running:
                    self.state.set_busy_since(self.slot, min(self._running.values()))
                else:
                    self.state.set_busy_since(self.slot, 0.0)
                    self.state.set_worker_state(self.slot, READY)

    # ------------------------------------------------------------ other routes
    async def _metrics(self, send: Callable, echo: list) -> tuple[int, int]:
        counts = self.state.counts()
        labels = ",".join(f'{k}="{v}"' for k, v in self.build_info.items())
        lines = ["# HELP smserve_workers Worker processes by state", "# TYPE smserve_workers gauge"]
        lines += [f'smserve_workers{{state="{name}"}} {count}' for name, count in counts.items()]
        lines += ["# HELP smserve_build_info Build information", "# TYPE smserve_build_info gauge",
                  f"smserve_build_info{{{labels}}} 1"]
        self.metrics.flush()  # this worker's own recent observations (other workers flush every 50 ms)
        loop = asyncio.get_running_loop()
        body = await loop.run_in_executor(None, self.metrics.render, lines)
        await respond(send, 200, body, b"text/plain; version=0.0.4; charset=utf-8", echo)
        return 200, len(body)

    async def _execution_parameters(self, send: Callable, echo: list) -> tuple[int, int]:
        import json

        s = self.settings
        body = json.dumps({
            "MaxConcurrentTransforms": s.max_concurrent_transforms or self.state.workers * s.worker_threads,
            "BatchStrategy": s.batch_strategy or "MULTI_RECORD",
            # the request limit actually enforced, in whole MiB (at least 1: the field has no smaller unit)
            "MaxPayloadInMB": s.max_payload_mb or max(1, self.limit // 1_048_576),
        }).encode()
        await respond(send, 200, body, JSON_TYPE, echo)
        return 200, len(body)

    async def _send_error(self, send: Callable, exc: ServingError, request_id: str, echo: list) -> tuple[int, int]:
        original = exc.original if isinstance(exc, HookFailure) else exc
        kv = {"request_id": request_id}
        if isinstance(exc, HookFailure) and not isinstance(exc.original, ServingError):
            log.error("%s raised %s: %s", exc.stage or "transform_fn", type(exc.original).__name__,
                      printable(exc.message), exc_info=exc.original, extra={"kv": kv})
        elif exc.status >= 500:
            log.error("%s: %s", exc.error_type, printable(exc.message), extra={"kv": kv})
        else:
            log.info("%s %s: %s", exc.status, exc.error_type, printable(exc.message), extra={"kv": kv})
        body = error_body(exc.status, exc.error_type, exc.message, request_id, original, self.settings.debug,
                          exc.body_fields)
        extra = list(echo)
        if exc.status == 503:
            extra.append((b"retry-after", b"1"))
        if isinstance(exc, MethodNotAllowed):
            extra.append((b"allow", ", ".join(exc.allow).encode()))
        if exc.close_connection:
            extra.append((b"connection", b"close"))
        await respond(send, exc.status, body, JSON_TYPE, extra)
        return exc.status, len(body)


class StreamBroken(Exception):
    """Raised out of the ASGI app after a streamed answer failed: uvicorn then closes the connection without the
    final chunk, so the client sees an incomplete response instead of a complete-looking one (the failure is
    logged once, by _stream; `quiet_stream_breaks` keeps uvicorn from logging it again)."""

    def __init__(self, message: str, status: int, sent: int):
        super().__init__(message)
        self.status, self.sent, self.received = status, sent, 0


def quiet_stream_breaks(record) -> bool:
    """A logging filter for uvicorn's error logger."""
    return not (record.exc_info and isinstance(record.exc_info[1], StreamBroken))


def _answer_headers(result: InferenceResult, extra: list) -> list:
    """The headers of a hook's answer: its content type, `extra` (length, request id echo), the hook's own."""
    return [(b"content-type", result.content_type.encode("latin-1")), *extra,
            *[(name.encode("latin-1"), value.encode("latin-1")) for name, value in result.headers]]


def _next_chunk(chunks) -> bytes | None:
    return next(chunks, None)


def request_id_of(headers: list) -> tuple[str, list]:
    """(request id, headers to echo): Inference-Id wins, then X-Request-Id, else 32 random hex chars."""
    inference_id = request_id = None
    for name, value in headers:
        if name == b"x-amzn-sagemaker-inference-id":
            inference_id = value
        elif name == b"x-request-id":
            request_id = value
    if inference_id is not None:
        return inference_id.decode("latin-1"), [(b"x-amzn-sagemaker-inference-id", inference_id),
                                                (b"x-request-id", inference_id)]
    if request_id is None:
        request_id = new_request_id()
    return request_id.decode("latin-1"), [(b"x-request-id", request_id)]


class _RequestIds:
    """32 hex digits: a random per-process prefix and a counter. Unique across workers and restarts without
    a getrandom() system call per request."""

    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._prefix = os.urandom(8).hex()
        self._next = itertools.count(1).__next__

    def __call__(self) -> bytes:
        return f"{self._prefix}{self._next():016x}".encode()


new_request_id = _RequestIds()


async def respond(send: Callable, status: int, body: bytes, content_type: bytes, extra: list | tuple = ()) -> None:
    """One whole answer over ASGI (shared with the multi-model front): its length is always declared."""
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def build_info(settings: Settings, framework_version: str) -> dict[str, str]:
    return {"family": settings.family, "variant": settings.variant, "framework_version": framework_version,
            "version": __version__}
