"""HTTP/1.1 connections as every worker serves them: uvicorn's httptools protocol, guarded against slow and
oversized clients (docs/security.md).

uvicorn parses and dispatches; this subclass adds the limits a server facing untrusted clients needs and uvicorn
leaves out: a deadline for a request's headers (a slowloris client sending one header line every few seconds
holds a socket for ever otherwise), a cap on header bytes (a 100 MiB header was buffered whole), an idle
deadline for connections that never send a request, and a cap on connections per worker (file descriptors are
finite: at the cap the connection that has waited longest for a complete request makes room, never one just
accepted, whose request may already be in flight). Every answer
this layer writes itself (400 for unparseable HTTP, 408, 431, 503) is smserve's JSON error body with a request
id, and gets an access line like any request.

The per-request cost is one search for the blank line that ends the headers and a few attribute writes in
two parser callbacks (per-header callbacks cost 4-8 % of a no-op request's CPU and were removed); deadlines are
enforced by one sweep per worker several times a second, not by a timer per request.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .errors import error_body
from .server import new_request_id

# (status, type, message) of the answers this layer writes
MALFORMED = (400, "BadRequest", "the request is not valid HTTP/1.1")
HEADER_TIMEOUT = (408, "RequestTimeout", "the request headers did not arrive within {seconds:g} s "
                                         "(SMSERVE_HEADER_TIMEOUT)")
HEADERS_TOO_LARGE = (431, "RequestHeaderFieldsTooLarge", "the request line and headers exceed {limit} bytes "
                                                          "(SMSERVE_MAX_HEADER_BYTES)")
LINGER_SECONDS = 1.0

TOO_MANY_CONNECTIONS = (503, "Overloaded", "this worker holds its maximum of {limit} connections "
                                           "(SMSERVE_MAX_CONNECTIONS); retry")


class GuardedProtocol(HttpToolsProtocol):
    """One connection. `guard` (a class attribute set by `Guard.protocol`) carries the limits and the app."""

    guard: "Guard"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.deadline: float | None = None  # monotonic time this connection must have made progress by
        self.waiting_since: float | None = None  # since when it waits for a complete request; None while serving
        self.reading_headers = True  # until the end of a request's headers
        self.pending_bytes = 0  # request line and header bytes received so far (bounds what the parser buffers)
        self.header_tail = b""  # the last bytes of the previous read: the blank line may straddle two reads
        self.lingering = False  # refused: the answer is written, what the client still sends is discarded

    # ---- connection
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        guard = self.guard
        full = len(self.connections) >= guard.max_connections and not guard.make_room(self.connections)
        super().connection_made(transport)
        self.waiting_since = time.monotonic()
        if full:
            self.refuse(TOO_MANY_CONNECTIONS, linger=False, limit=guard.max_connections)
        else:
            self.deadline = time.monotonic() + guard.idle_timeout

    def data_received(self, data: bytes) -> None:
        if self.lingering:
            return
        if self.reading_headers:  # bound the request line + headers before the parser buffers them
            end = (self.header_tail + data).find(b"\r\n\r\n")
            if end < 0:
                self.pending_bytes += len(data)
                self.header_tail = data[-3:]
            else:
                self.pending_bytes += end + 4 - len(self.header_tail)
            if self.pending_bytes > self.guard.max_header_bytes:
                self.refuse(HEADERS_TOO_LARGE, limit=self.guard.max_header_bytes)
                return
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._unsupported_upgrade_warning()  # no WebSocket route exists
        except httptools.HttpParserError:
            self.refuse(MALFORMED)

    # ---- parser callbacks (one each per request: the header count is taken in data_received, not per header)
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.deadline = time.monotonic() + self.guard.header_timeout

    def on_headers_complete(self) -> None:
        self.reading_headers = False
        self.waiting_since = None
        self.deadline = None  # from here the request deadline (SAGEMAKER_MODEL_SERVER_TIMEOUT) applies
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # arms uvicorn's keep-alive timer (SMSERVE_IDLE_TIMEOUT)
        self.reading_headers = True
        self.pending_bytes, self.header_tail = 0, b""
        if not self.pipeline:  # idle until the next request (a queued one is being served)
            self.waiting_since = time.monotonic()

    # ---- answers of this layer
    def refuse(self, answer: tuple[int, str, str], linger: bool = True, **values: Any) -> None:
        """Write one of this layer's JSON errors and log it. Then half-close and discard what the client still
        sends for LINGER_SECONDS before closing: a close with unread data would reset the connection, and the
        client (still sending its oversized request) would never read the answer. Without `linger`, close now."""
        self.deadline = None
        if self.transport.is_closing() or self.lingering:
            return
        status, error_type, template = answer
        self.guard.answer(self.transport, status, error_type, template.format(**values))
        self.lingering = True
        if linger and self.transport.can_write_eof():
            self.transport.write_eof()
            self.deadline = time.monotonic() + LINGER_SECONDS
        else:
            self.transport.close()

    def expire(self, linger: bool = True) -> None:
        """The deadline passed: 408 for a request whose headers did not arrive; a close when idle or lingering."""
        if self.pending_bytes and not self.lingering:
            self.refuse(HEADER_TIMEOUT, linger, seconds=self.guard.header_timeout)
        else:
            self.deadline = None
            if not self.transport.is_closing():
                self.transport.close()


class Guard:
    """The limits of one worker, the sweep that enforces its deadlines, and how its refusals are answered."""

    def __init__(self, settings: Any, app: Any):
        self.header_timeout = settings.header_timeout
        self.idle_timeout = settings.idle_timeout
        self.max_header_bytes = settings.max_header_bytes
        self.max_connections = settings.max_connections or default_max_connections()
        self.app = app

    def protocol(self) -> type[GuardedProtocol]:
        """The protocol class uvicorn instantiates per connection (`uvicorn.Config(http=...)`)."""
        return type("WorkerProtocol", (GuardedProtocol,), {"guard": self})

    def make_room(self, connections: set) -> bool:
        """At the cap: forget connections already closing, else close the one that has waited longest for a
        complete request, slow or idle (no lingering: the slot is needed now). Age, not the nearest deadline: a
        connection accepted a moment ago has the nearest idle deadline while its request may be on the wire (with
        several listening sockets accepts are not in arrival order). False when every connection is serving."""
        for connection in [c for c in connections if c.transport is None or c.transport.is_closing()]:
            connections.discard(connection)
        if len(connections) < self.max_connections:
            return True
        waiting = [c for c in connections if c.waiting_since is not None]
        if not waiting:
            return False
        oldest = min(waiting, key=lambda c: c.waiting_since)
        oldest.expire(linger=False)
        connections.discard(oldest)
        return True

    def answer(self, transport: asyncio.Transport, status: int, error_type: str, message: str) -> None:
        request_id = new_request_id().decode()
        body = error_body(status, error_type, message, request_id)
        transport.write(b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
                        b"x-request-id: %s\r\nconnection: close\r\n\r\n%s"
                        % (status, _REASONS[status], len(body), request_id.encode(), body))
        self.app.record_refusal(status, len(body), request_id)

    async def sweep(self, connections: set) -> None:
        """Expire connections past their deadline, several times within the shortest deadline."""
        interval = max(0.05, min(self.header_timeout, self.idle_timeout) / 5)
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for connection in [c for c in connections if c.deadline is not None and c.deadline < now]:
                connection.expire()


def default_max_connections() -> int:
    """What the open-file limit allows a worker, less a reserve for the model's files, pipes and logs."""
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 10_000
    return max(16, min(10_000, soft - 64))


_REASONS = {400: b"Bad Request", 408: b"Request Timeout", 431: b"Request Header Fields Too Large",
            503: b"Service Unavailable"}
