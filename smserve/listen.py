"""Listening sockets: the supervisor's shared one and one per worker, all in one SO_REUSEPORT group (core §15).

Workers that all accept on one shared socket do not share connections fairly: the first worker to wake takes
every connection that is waiting, and a client that keeps a few long-lived connections (a load balancer, a
benchmark, SageMaker's front end) can end up with all of them on one worker while the others idle (8 of 8
connections on one of two workers in a quarter of the rounds measured, docs/benchmarks.md). With a listening
socket of its own in the group, each worker gets the share of new connections that the kernel's address hash
gives it. The supervisor's socket stays in the group as well: it exists from the first moment, its backlog keeps
connections while a lone worker restarts, and every worker also accepts from it.
"""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path

from .errors import StartupError

BACKLOG = 2048


def _socket(family: int, v6only: bool = False) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(v6only))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    return sock


def bind(port: int, host: str | None = None) -> socket.socket:
    """The supervisor's socket: all interfaces (dual-stack [::] when IPv6 exists, else 0.0.0.0) or `host` alone.

    A first bind without SO_REUSEPORT fails while anything listens on the port (another smserve included, whose
    sockets do have SO_REUSEPORT), so a second server on a taken port still stops with "port in use" instead of
    joining the first one's group."""
    if host:
        family, address = (socket.AF_INET6 if ":" in host else socket.AF_INET), (host, port)
    else:
        family, address = socket.AF_INET6, ("::", port)
        try:
            socket.socket(family, socket.SOCK_STREAM).close()
        except OSError:
            family, address = socket.AF_INET, ("0.0.0.0", port)
    for reuse_port in (False, True):
        sock = _socket(family)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:
                raise StartupError(f"port {port} is already in use; set SAGEMAKER_BIND_TO_PORT to a free port") \
                    from None
            raise
        if not reuse_port:
            sock.close()  # the probe: the port was free
    sock.listen(BACKLOG)
    sock.set_inheritable(True)
    return sock


def bind_unix(path: Path) -> socket.socket:
    """A model server of a multi-model endpoint: its front connects here (a private run folder, mode 0600)."""
    path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    os.chmod(path, 0o600)
    sock.listen(BACKLOG)
    sock.set_inheritable(True)
    return sock


def worker_listener(shared: socket.socket) -> socket.socket:
    """A worker's own socket on the shared socket's address, in its SO_REUSEPORT group."""
    v6only = shared.family == socket.AF_INET6 and bool(shared.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY))
    sock = _socket(shared.family, v6only)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind(shared.getsockname())
        sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    return sock
