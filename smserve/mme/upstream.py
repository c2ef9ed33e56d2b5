"""HTTP/1.1 over a Unix socket from the multi-model front to one model's server (or over loopback TCP to a family's
backend, for a family's dialect): keep-alive connections in a small pool, bodies as raw bytes, responses parsed by
httptools (uvicorn's parser), chunked ones included."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import httptools

# hop-by-hop and framing headers: never forwarded in either direction
NOT_FORWARDED = {b"connection", b"keep-alive", b"transfer-encoding", b"content-length", b"host", b"upgrade",
                 b"te", b"trailer", b"proxy-connection", b"expect"}


class UpstreamClosed(Exception):
    """The model's server closed the connection before answering."""


@dataclass
class Answer:
    status: int = 0
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)
    complete: bool = False
    keep_alive: bool = True

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.complete = True


class Upstream:
    def __init__(self, address: str | tuple[str, int], pool_size: int = 32):
        """`address`: a Unix socket path, or (host, port) of a TCP server; `pool_size` 0 keeps no connection."""
        self.address = address
        self.pool_size = pool_size
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def request(self, method: str, target: str, headers: list[tuple[bytes, bytes]], body: bytes) -> Answer:
        """One request; a pooled connection the server closed meanwhile is retried once on a fresh one (nothing
        was answered on it, and the request is only sent again when not a byte of its answer arrived)."""
        for attempt in (0, 1):
            fresh = not self._idle
            reader, writer = self._idle.pop() if self._idle else await self._connect()
            try:
                answer = await self._exchange(reader, writer, method, target, headers, body)
            except (UpstreamClosed, ConnectionError, BrokenPipeError) as exc:
                writer.close()
                if fresh or attempt:
                    raise UpstreamClosed(f"the model server closed the connection: {exc}") from None
                continue
            except BaseException:
                writer.close()
                raise
            if answer.keep_alive and len(self._idle) < self.pool_size:
                self._idle.append((reader, writer))
            else:
                writer.close()
            return answer
        raise AssertionError("unreachable")

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if isinstance(self.address, str):
            return await asyncio.open_unix_connection(self.address)
        return await asyncio.open_connection(*self.address)

    async def _exchange(self, reader, writer, method, target, headers, body) -> Answer:
        head = [f"{method} {target} HTTP/1.1\r\nhost: model\r\ncontent-length: {len(body)}\r\n".encode("latin-1")]
        head += [name + b": " + value + b"\r\n" for name, value in headers if name not in NOT_FORWARDED]
        writer.write(b"".join(head) + b"\r\n" + body)
        await writer.drain()
        answer = Answer()
        parser = httptools.HttpResponseParser(answer)
        while not answer.complete:
            data = await reader.read(65536)
            if not data:
                if answer.status == 0 and not answer.headers:
                    raise UpstreamClosed("no answer")
                raise UpstreamClosed("the answer was cut short")
            parser.feed_data(data)
            if not answer.status:
                answer.status = parser.get_status_code() or 0
        answer.keep_alive = parser.should_keep_alive()
        return answer

    def close(self) -> None:
        for _reader, writer in self._idle:
            writer.close()
        self._idle.clear()
