"""The local channel: the same REST requests as TF Serving's HTTP API, framed over a Unix socket.

Requests without handler code never leave the container, so the front does not need HTTP to reach the built-in
backend: a length-prefixed frame over a Unix socket carries the same method, path and body and returns the same
status and body (the backend answers both with one `RestApi.handle`), without HTTP parsing, header building
or TCP on either side (spec tensorflow.md §2 allows it; docs/benchmarks.md measures both). Standard library
only: the front imports the client half and never imports TensorFlow.

Frame: request = `!BHI` (method 0 GET / 1 POST, path length, body length), path, body;
answer = `!HI` (status, body length), body. A connection carries any number of frames in turn.
"""

from __future__ import annotations

import logging
import os
import socket
import socketserver
import struct
import threading
from typing import Callable

_REQUEST = struct.Struct("!BHI")
_ANSWER = struct.Struct("!HI")
_METHODS = ("GET", "POST")
Handle = Callable[[str, str, bytes], "tuple[int, bytes]"]

log = logging.getLogger("smserve.tensorflow.channel")


class ChannelUnavailable(ConnectionError):
    """The backend is not listening (not started yet, restarting, or gone)."""


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    if size == 0:
        return b""
    view = bytearray(size)
    got = 0
    while got < size:
        n = sock.recv_into(memoryview(view)[got:])
        if n == 0:
            raise ConnectionResetError("the other side closed the local channel")
        got += n
    return bytes(view)


# ---------------------------------------------------------------- backend side
class _Connection(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        sock: socket.socket = self.request
        handle: Handle = self.server.api_handle  # type: ignore[attr-defined]
        while True:
            try:
                head = _read_exactly(sock, _REQUEST.size)
            except (ConnectionError, OSError):
                return
            method, path_len, body_len = _REQUEST.unpack(head)
            path = _read_exactly(sock, path_len).decode("utf-8", "replace")
            body = _read_exactly(sock, body_len)
            try:
                status, answer = handle(_METHODS[method] if method < 2 else "PUT", path, body)
            except Exception as exc:  # noqa: BLE001  (the handler maps its own errors; this is a last resort)
                log.exception("local channel request failed")
                status, answer = 500, b'{"error": "internal error in the backend: %s"}' % type(exc).__name__.encode()
            sock.sendall(_ANSWER.pack(status, len(answer)) + answer if len(answer) < 65536
                         else _ANSWER.pack(status, len(answer)))
            if len(answer) >= 65536:
                sock.sendall(answer)


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def serve_local(path: str, handle: Handle) -> threading.Thread:
    """Serve `handle` on the Unix socket `path` from a daemon thread (a thread per connection: each front
    thread keeps one connection)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    server = _Server(path, _Connection)
    server.api_handle = handle  # type: ignore[attr-defined]
    os.chmod(path, 0o600)
    thread = threading.Thread(target=server.serve_forever, name="local-channel", daemon=True)
    thread.start()
    return thread


# ---------------------------------------------------------------- front side
class LocalChannel:
    """A client of one backend's socket: one persistent connection per calling thread."""

    def __init__(self, path: str):
        self.path = path
        self._local = threading.local()

    def _connect(self, timeout: float) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(self.path)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            sock.close()
            raise ChannelUnavailable(f"the backend is not listening on {self.path}") from exc
        self._local.sock = sock
        return sock

    def request(self, method: str, path: str, body: bytes = b"", timeout: float = 60.0) -> tuple[int, bytes]:
        encoded = path.encode("utf-8")
        frame = _REQUEST.pack(1 if method == "POST" else 0, len(encoded), len(body)) + encoded
        sock = getattr(self._local, "sock", None)
        fresh = sock is None
        for attempt in (0, 1):
            if sock is None:
                sock = self._connect(timeout)
                fresh = True
            try:
                sock.settimeout(timeout)
                if len(body) < 65536:
                    sock.sendall(frame + body)
                else:
                    sock.sendall(frame)
                    sock.sendall(body)
                status, size = _ANSWER.unpack(_read_exactly(sock, _ANSWER.size))
                return status, _read_exactly(sock, size)
            except socket.timeout:
                self.close()
                raise
            except (ConnectionError, OSError) as exc:
                self.close()
                sock = None
                if fresh or attempt:  # a new connection failed: the backend is gone, not just restarted
                    raise ChannelUnavailable(f"the backend closed the local channel {self.path}: {exc}") from exc
        raise AssertionError("unreachable")

    def close(self) -> None:
        sock = getattr(self._local, "sock", None)
        if sock is not None:
            self._local.sock = None
            try:
                sock.close()
            except OSError:
                pass
