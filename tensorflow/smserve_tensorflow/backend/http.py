"""A raw ASGI app (no framework: nothing between uvicorn and RestApi.handle) for the backend's REST port.

TensorFlow calls block, so every request runs `RestApi.handle` in a thread pool sized like TF Serving's REST
executor; the event loop only moves bytes.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .rest import NOT_FOUND_PAGE, RestApi

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

_JSON = b"application/json"
_HTML = b"text/html"


def default_worker_count() -> int:
    """TF Serving's --rest_api_num_threads default: four per schedulable CPU."""
    return 4 * (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def request_path(scope: Scope) -> str:
    """The path as received (TF Serving matches and quotes the undecoded path), without the query string."""
    raw = scope.get("raw_path")
    path = raw.decode("latin-1") if raw else scope.get("path", "")
    return path.split("?", 1)[0]


class RestApp:
    """ASGI callable: read the whole body, answer with RestApi.handle's status and body."""

    def __init__(self, api: RestApi, workers: int | None = None) -> None:
        self.api = api
        self.executor = ThreadPoolExecutor(max_workers=workers or default_worker_count(),
                                           thread_name_prefix="tfs-rest")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        chunks = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        loop = asyncio.get_running_loop()
        status, payload = await loop.run_in_executor(self.executor, self.api.handle, scope["method"],
                                                     request_path(scope), body)
        content_type = _HTML if payload is NOT_FOUND_PAGE else _JSON
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", content_type), (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.executor.shutdown(wait=False)
                await send({"type": "lifespan.shutdown.complete"})
                return


def create_app(api: RestApi, workers: int | None = None) -> RestApp:
    return RestApp(api, workers)
