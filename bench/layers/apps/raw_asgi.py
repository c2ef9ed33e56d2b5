"""Raw ASGI app (no framework), two variants of the same routes (POST /invocations, GET /ping):

  app       the handler runs on the event loop.
  app_pool  the handler runs on a one-thread ThreadPoolExecutor via run_in_executor, the hot path of
            smserve's App (SMSERVE_WORKER_THREADS=1) without its limits, metrics, logs and error table.
"""
import asyncio
from concurrent.futures import ThreadPoolExecutor

from work import work

PING = b'{"status":"Healthy"}'
JSON = [(b"content-type", b"application/json")]
_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="predict")


async def _body(receive):
    message = await receive()
    body = message.get("body", b"")
    while message.get("more_body"):
        message = await receive()
        body += message.get("body", b"")
    return body


async def _send(send, status, body):
    await send({"type": "http.response.start", "status": status,
                "headers": JSON + [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def _make(offload):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        if path == "/ping" and method == "GET":
            await _send(send, 200, PING)
        elif path == "/invocations" and method == "POST":
            body = await _body(receive)
            if offload:
                out = await asyncio.get_running_loop().run_in_executor(_pool, work, body)
            else:
                out = work(body)
            await _send(send, 200, out.encode())
        else:
            await _send(send, 404, b'{"error":"not found"}')
    return app


app = _make(False)
app_pool = _make(True)
