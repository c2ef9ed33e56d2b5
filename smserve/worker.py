"""One worker process: serves HTTP on the shared socket, loads the model on a thread.

A worker of the first boot accepts at once and answers /ping 503 while its model loads, so the platform sees a
live endpoint from the first second (spec core §1.2 steps 2 and 6). While code/requirements.txt is installed and
while the zygote imports the framework, a stand-in worker, which never loads a model, answers in its place: the
serving workers start only after the install (from a supervisor that has imported nothing the install could
replace) and after the framework import (forked by the zygote).
"""

from __future__ import annotations

import asyncio
import functools
import gc
import importlib
import logging
import math
import os
import signal
import socket
import sys
import threading
import time
import traceback
from typing import Callable

import uvicorn

from . import listen, logs
from .config import Settings
from .context import WorkerInfo
from .protocol import Guard
from .server import App, build_info, quiet_stream_breaks
from .state import DRAINING, EXIT_LOAD_FAILED, FAILED, LOADING, READY, STARTING, STOPPED, WorkerSpec

log = logging.getLogger("smserve.worker")
# A thread that wants the GIL waits up to this long for the running one to let go (CPython's default: 5 ms). A
# predict thread coming back from torch, or the batch thread, waited behind the event loop's Python for up to that
# long: 0.5 ms gave 869 instead of 691 req/s (MLP 512-2048-2048-10, 32 connections, 2 workers), 1,600 instead of
# 1,411 with batching, and 4,450 instead of 4,000 on the no-op handler (1 worker, 8 connections; docs/benchmarks.md).
GIL_SWITCH_INTERVAL = 0.0005
LOAD_FAILED_DRAIN = 2.0  # at most this long for the answers in flight when a model fails to load


class WorkerServer(uvicorn.Server):
    """uvicorn server that accepts only what it can serve and drains before it stops.

    With `accept_at_once` (a worker of the first boot, or the stand-in) it accepts on the supervisor's shared
    socket from the start, so /ping answers 503 while models load. Otherwise (a worker that replaces one that
    died while the others serve, or one that starts while the stand-in answers) it accepts nothing until its
    model is loaded: it would answer NotReady to traffic that others could serve. A worker adds its own
    SO_REUSEPORT listener when its model is loaded. On SIGTERM: 503 on open connections until in-flight requests
    finish."""

    def __init__(self, config: uvicorn.Config, app: App, graceful: float, guard: Guard, shared: socket.socket,
                 accept_at_once: bool, on_closed: Callable[[], None] | None = None):
        super().__init__(config)
        self.on_closed = on_closed  # told when it accepts nothing more (the stand-in: the supervisor waits for it)
        self.app = app
        self.graceful = graceful
        self.guard = guard
        self.shared = shared
        self.accept_at_once = accept_at_once
        self._drain_started = False

    def handle_exit(self, sig, frame) -> None:
        if self._drain_started:
            return super().handle_exit(sig, frame)
        self._drain_started = True
        self.app.draining = True
        loop = getattr(self, "_loop", None)
        if loop is not None:
            loop.call_soon_threadsafe(lambda: loop.create_task(self._drain()))
        else:
            self.should_exit = True

    async def _drain(self) -> None:
        for server in getattr(self, "servers", []):
            server.close()  # stop accepting: together with the supervisor's close, new connections are refused
        if self.on_closed is not None:
            self.on_closed()
        deadline = time.monotonic() + self.graceful
        while self.app.inflight and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        self.app.access_log.flush()
        if self.app.metrics is not None:
            self.app.metrics.flush()
        self.should_exit = True

    async def startup(self, sockets=None) -> None:
        self._loop = asyncio.get_running_loop()
        self.app.access_log.bind(self._loop)
        if self.app.metrics is not None:
            self.app.metrics.bind(self._loop)
        await super().startup(sockets=[self.shared] if self.accept_at_once else [])
        self._sweep = self._loop.create_task(self.guard.sweep(self.server_state.connections))
        self._listening = self._loop.create_task(self._accept_when_ready())

    async def _accept_when_ready(self) -> None:
        while self.app.handler is None:  # set by the model-loader thread when the model is loaded
            await asyncio.sleep(0.02)
        if self._drain_started:
            return
        sockets = [] if self.accept_at_once else [self.shared]
        try:
            if self.shared.family != socket.AF_UNIX:  # a multi-model front's connections: one shared socket
                sockets.append(listen.worker_listener(self.shared))
        except OSError as exc:
            log.warning("worker accepts on the shared socket only (no SO_REUSEPORT listener of its own: %s); "
                        "connections may gather on one worker", exc)
        factory = functools.partial(self.config.http_protocol_class, config=self.config,
                                    server_state=self.server_state, app_state=self.lifespan.state)
        for sock in sockets:
            server = await self._loop.create_server(factory, sock=sock, backlog=self.config.backlog)
            self.servers.append(server)
            if self._drain_started:  # SIGTERM arrived meanwhile: _drain closed the others
                server.close()


def uvicorn_config(settings: Settings, app: App, guard: Guard) -> uvicorn.Config:
    """uvicorn as every worker runs it: the guarded httptools protocol (protocol.py). Its graceful-shutdown wait
    takes whole seconds: rounded up, so that SMSERVE_GRACEFUL_TIMEOUT=0.5 still lets open connections finish
    (int() made it 0)."""
    return uvicorn.Config(app, loop="uvloop", http=guard.protocol(), lifespan="off", access_log=False,
                          log_config=None, timeout_keep_alive=settings.idle_timeout, server_header=False,
                          date_header=False, proxy_headers=False,
                          timeout_graceful_shutdown=math.ceil(settings.graceful_timeout))


def run(spec: WorkerSpec, slot: int, accept_at_once: bool, standin: bool = False) -> None:
    """Entry point of a forked worker, its environment already set (resources.worker_environment); never
    returns. A stand-in serves without ever loading a model."""
    settings, plan = spec.settings, spec.plan
    logs.configure(settings, "standin" if standin else f"worker-{slot}")
    if standin:
        from .zygote import STANDIN_NAME, set_process_name

        set_process_name(STANDIN_NAME)
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
    logging.getLogger("uvicorn.error").addFilter(quiet_stream_breaks)
    spec.state.set_worker_state(slot, STARTING)
    spec.state.set_pid(slot, os.getpid())
    os.chdir(spec.layout.model_dir)
    _reseed_inherited_generators()
    sys.setswitchinterval(GIL_SWITCH_INTERVAL)

    from . import codecs
    from .metrics import Metrics

    codecs.set_decode_factor(settings.decode_factor)

    metrics = Metrics() if settings.metrics else None
    access_log = logs.AccessLog(settings)
    app = App(settings, spec.state, slot, access_log, metrics,
              build_info(settings, spec.family.framework_version()))
    guard = Guard(settings, app)
    closed = (lambda: spec.state.set_worker_state(slot, STOPPED)) if standin else None
    server = WorkerServer(uvicorn_config(settings, app, guard), app, settings.graceful_timeout, guard, spec.sock,
                          accept_at_once, closed)
    exit_status = [0]
    if not standin:
        gpus = plan.gpu_sets[slot]
        worker_info = WorkerInfo(model_dir=str(spec.layout.model_dir), gpu_id=0 if gpus else None,
                                 physical_gpu_id=gpus[0] if gpus else None)

        def stop_serving(status: int) -> None:
            exit_status[0] = status
            server.handle_exit(signal.SIGTERM, None)

        threading.Thread(target=_load, args=(spec, slot, app, worker_info, metrics, stop_serving),
                         name="model-loader", daemon=True).start()
    server.run()
    access_log.flush()
    if metrics is not None:
        metrics.flush()
    logging.shutdown()
    os._exit(exit_status[0])


def _reseed_inherited_generators() -> None:
    """A forked worker starts with its parent's copy of every random generator created before the fork; give it
    what a freshly started process would have. Python's `random` re-seeds itself after a fork; numpy's global
    generator is seeded from OS entropy when numpy.random is first imported (mxnet imports it, in the zygote), so
    it is re-seeded from OS entropy here. torch's default generator starts from a fixed seed in every fresh
    process and nothing draws from it before the fork, so the copy already is the fresh state."""
    random = sys.modules.get("numpy.random")
    if random is not None:
        random.seed()


def _load(spec: WorkerSpec, slot: int, app: App, worker_info: WorkerInfo, metrics,
          stop_serving: Callable[[int], None]) -> None:
    state = spec.state
    while state.phase < LOADING:  # requirements are still being installed by the supervisor
        time.sleep(0.02)
    if state.phase == DRAINING:
        return
    started = time.monotonic()
    gc.disable()  # no collections while modules import and the model loads: collected once when it is loaded
    try:
        prepend, append = spec.layout.import_paths()
        sys.path[:0] = prepend  # the requirements overlay is first already (requirements.activate)
        sys.path.extend(append)
        importlib.invalidate_caches()
        spec.family.configure_threads(spec.plan.threads)
        module = None
        if spec.layout.module is not None:
            module = importlib.import_module(spec.layout.module.name)
        observe = (lambda stage, seconds: metrics.observe_stage(stage, seconds)) if metrics else None
        handler = spec.family.create_handler(spec.settings, worker_info, module, observe,
                                             metrics.user_metric if metrics else None,
                                             lambda message: log.warning(message),
                                             observe_batch=metrics.observe_batch if metrics else None)
        handler.load()
    except BaseException as exc:  # noqa: BLE001 - any failure here must stop startup with its traceback
        state.set_worker_state(slot, FAILED)
        sys.stdout.flush()
        log.error("worker %d could not load the model: %s: %s\n%s", slot, type(exc).__name__, exc,
                  "".join(traceback.format_exception(exc)))
        # stop accepting and finish the /ping answers in flight (a client must not see a body cut short), then go
        stop_serving(EXIT_LOAD_FAILED)
        time.sleep(LOAD_FAILED_DRAIN)
        logging.shutdown()
        os._exit(EXIT_LOAD_FAILED)
    app.handler = handler
    gc.collect()
    gc.freeze()  # the model and modules stay out of later collections: shorter GC pauses on the request path
    gc.enable()
    state.set_worker_state(slot, READY)
    log.info("worker %d ready in %.2f s (pid %d, device %s)", slot, time.monotonic() - started, os.getpid(),
             f"GPU {worker_info.physical_gpu_id}" if worker_info.gpu_id is not None else "cpu")
