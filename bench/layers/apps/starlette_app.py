"""Starlette 1.10.0 app, two variants of the same routes (POST /invocations, GET /ping):

  app       `async def` endpoint: the handler runs on the event loop (how peers.md §3 measured it);
            a long predict blocks the loop, and /ping with it.
  app_pool  plain `def` endpoint: Starlette runs it on its thread pool (anyio), so the loop stays free
            for /ping while a predict runs, the property smserve's App provides.
"""
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from work import work

PING = b'{"status":"Healthy"}'


async def ping(request: Request) -> Response:
    return Response(PING, media_type="application/json")


async def invocations(request: Request) -> Response:
    return Response(work(await request.body()), media_type="application/json")


async def invocations_pool(request: Request) -> Response:
    from starlette.concurrency import run_in_threadpool

    body = await request.body()
    return Response(await run_in_threadpool(work, body), media_type="application/json")


app = Starlette(routes=[Route("/ping", ping, methods=["GET"]),
                        Route("/invocations", invocations, methods=["POST"])])
app_pool = Starlette(routes=[Route("/ping", ping, methods=["GET"]),
                             Route("/invocations", invocations_pool, methods=["POST"])])
