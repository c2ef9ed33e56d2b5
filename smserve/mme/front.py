"""The multi-model endpoint's front (spec core §1.3, §1.4, §13): the one process on the port. It answers /ping,
the /models API and /metrics itself, in its family's words (dialect.py), never imports user code or a framework,
and passes each invocation as raw bytes to the named model's own server (servers.py) over a Unix socket."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path
from typing import Callable
from urllib.parse import parse_qs, unquote

import uvicorn
import uvloop

from ..config import THREAD_VARS, Settings
from ..errors import (BadRequest, Conflict, DeadlineExceeded, LoadTimeout, MethodNotAllowed, ModelNotLoadable,
                      PayloadTooLarge, RequirementsInstallError, RouteNotFound, ServingError, StartupError, WorkerDied,
                      error_body)
from ..families import resolve_family
from ..listen import bind
from ..logs import AccessLog
from ..protocol import Guard
from ..server import PING_OK, request_id_of, respond
from ..resources import directory_size, emptiest_gpu, gpu_free_memory, visible_gpus
from .registry import Model, Reservation, memory_figures
from .servers import ModelServer
from .upstream import NOT_FORWARDED, UpstreamClosed

log = logging.getLogger("smserve.mme")
JSON = b"application/json"


class Front:
    def __init__(self, settings: Settings, run_dir: Path):
        self.settings = settings
        self.mme = settings.mme
        self.family = resolve_family(settings.family)
        self.dialect = self.family.mme_dialect(settings)
        self.run_dir = run_dir
        self.models: dict[str, Model] = {}
        self.loading: dict[str, Reservation] = {}
        self.draining = False
        self.access_log = AccessLog(settings)
        self.evictions = 0
        self.universal = self._universal_code()
        self.loading_servers: dict[str, ModelServer] = {}
        self.stops: set[asyncio.Task] = set()  # stops of models whose server ended on its own
        self.gpus = visible_gpus(settings.cuda_visible_devices)  # each model goes to the one with most free memory

    def _universal_code(self) -> Path | None:
        """The universal code folder (core §13.4), for models without a code/ module of their own."""
        if self.settings.submit_directory:
            return None
        for folder in (self.mme.models_root / "code", self.settings.base_dir / "code"):
            if (folder / self.settings.program).is_file():
                log.info("universal code: %s applies to models without code/%s", folder / self.settings.program,
                         self.settings.program)
                return folder
        return None

    def _model_env(self, url: Path) -> dict[str, str]:
        """A model's server gets this environment, plus the universal code folder when the model has no module of
        its own (passed only then: a family may rank SAGEMAKER_SUBMIT_DIRECTORY above code/, as Neo does)."""
        env = dict(os.environ)
        # the models share the CPUs: one OpenMP/BLAS thread per worker unless the user set them. With a thread per
        # CPU, each worker's threads spin after its request while the next model's worker waits for a CPU (10
        # MXNet models invoked in turn: 10 ms a request at 2 threads per worker, 2.3 ms at 1)
        for name in THREAD_VARS:
            env.setdefault(name, "1")
        if self.universal is not None and not (url / "code" / self.settings.program).is_file():
            env["SAGEMAKER_SUBMIT_DIRECTORY"] = str(self.universal)
        return env

    def record_refusal(self, status: int, sent_bytes: int, request_id: str) -> None:
        """An answer the connection layer wrote itself (protocol.py: 400, 408, 431, 503) gets its access line."""
        self.access_log.record("-", "-", status, 0.0, 0, sent_bytes, request_id, "-")

    # ------------------------------------------------------------ ASGI entry
    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return
        started = time.perf_counter()
        path, method = scope["path"], scope["method"]
        request_id, echo = request_id_of(scope["headers"])
        if path == "/ping":
            if self.draining:
                await respond(send, 503, b'{"status":"Unhealthy","reason":"ShuttingDown"}', JSON, echo)
            else:
                await respond(send, 200, PING_OK, JSON, echo)
            return
        status, sent, received, model = 500, 0, 0, "-"
        try:
            status, sent, received, model = await self._route(scope, receive, send, echo)
        except ServingError as exc:
            status = exc.status
            level = logging.ERROR if status >= 500 and status != 507 else logging.INFO
            log.log(level, "%s %s: %s", status, exc.error_type, exc.message, extra={"kv": {"request_id": request_id}})
            body = error_body(exc.status, exc.error_type, exc.message, request_id,
                              fields=self.dialect.error_fields(exc))
            await respond(send, exc.status, body, JSON, echo)
            sent = len(body)
        self.access_log.record(method, path, status, (time.perf_counter() - started) * 1000, received, sent,
                               request_id, model)

    async def _route(self, scope, receive, send, echo) -> tuple[int, int, int, str]:
        path, method = scope["path"], scope["method"]
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        parts = [unquote(p) for p in scope.get("raw_path", path.encode()).decode("latin-1").strip("/").split("/")]
        if path == "/invocations":
            self._allow(method, ("POST",), path)
            names = query.get("model_name")
            if not names:
                raise self.dialect.missing_model_name()
            return await self._invoke(names[0], scope, receive, send, echo)
        if parts[0] == "models":
            if len(parts) == 1:
                self._allow(method, ("GET", "POST"), path)
                if method == "POST":
                    return await self._load(scope, receive, send, echo, query)
                return await self._list(send, echo, query)
            if len(parts) == 2:
                self._allow(method, ("GET", "DELETE"), path)
                if method == "GET":
                    return await self._describe(parts[1], send, echo)
                return await self._unload(parts[1], send, echo)
            if len(parts) == 3 and parts[2] == "invoke":
                self._allow(method, ("POST",), path)
                return await self._invoke(parts[1], scope, receive, send, echo)
        if parts[0] == "predictions" and len(parts) in (2, 3):
            self._allow(method, ("POST",), path)
            return await self._invoke(parts[1], scope, receive, send, echo)
        if path == "/execution-parameters":
            self._allow(method, ("GET",), path)
            body = json.dumps({"MaxConcurrentTransforms": self.settings.max_concurrent_transforms or 1,
                               "BatchStrategy": self.settings.batch_strategy or "MULTI_RECORD",
                               "MaxPayloadInMB": self.settings.max_payload_mb or
                               max(1, self.settings.max_request_bytes.value // 1_048_576)}).encode()
            await respond(send, 200, body, JSON, echo)
            return 200, len(body), 0, "-"
        if path == "/metrics" and self.settings.metrics:
            self._allow(method, ("GET",), path)
            body = self._metrics().encode()
            await respond(send, 200, body, b"text/plain; version=0.0.4; charset=utf-8", echo)
            return 200, len(body), 0, "-"
        raise RouteNotFound(f"no route for {method} {path}")

    @staticmethod
    def _allow(method: str, allowed: tuple[str, ...], path: str) -> None:
        if method not in allowed:
            raise MethodNotAllowed(f"{method} is not allowed on {path}; use {', '.join(allowed)}", allowed)

    async def _body(self, receive: Callable) -> bytes:
        """The request body within the request deadline (a body trickled byte by byte holds no connection and no
        model for longer), and within the size limit."""
        timeout = self.settings.request_timeout
        try:
            async with asyncio.timeout(timeout.value):
                return await self._receive_all(receive)
        except TimeoutError:
            raise DeadlineExceeded(f"the request body did not arrive within the request deadline of "
                                   f"{timeout.value:g} s ({timeout.source})") from None

    async def _receive_all(self, receive: Callable) -> bytes:
        limit = self.settings.max_request_bytes.value
        chunks, size = [], 0
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes "
                                      f"({self.settings.max_request_bytes.source})")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    # ------------------------------------------------------------ load
    async def _load(self, scope, receive, send, echo, query) -> tuple[int, int, int, str]:
        raw = await self._body(receive)
        content_type = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"content-type"), "")
        if content_type.split(";")[0].strip().lower() == "application/json":
            try:
                fields = json.loads(raw or b"{}")
            except ValueError as exc:
                raise BadRequest(f"the body is not JSON ({exc}); send {{\"model_name\": ..., \"url\": ...}}") from None
            if not isinstance(fields, dict):
                raise BadRequest('the body must be a JSON object: {"model_name": ..., "url": ...}')
        else:
            fields = {key: values[0] for key, values in query.items()}
        name = self.dialect.check_name(fields.get("model_name"))
        url = self._model_url(fields.get("url"), name)
        workers = self._workers(fields.get("initial_workers"))
        ignored = sorted(set(fields) - {"model_name", "url", "initial_workers", "response_timeout"})
        if ignored:
            log.debug("load of %s: ignoring %s", name, ", ".join(ignored))
        registered = self.models.get(name)
        if registered is not None and await self.dialect.gone(registered):
            self._forget(registered, "it can no longer serve")  # the platform reloads a model that answered 404
        if name in self.models or name in self.loading:
            raise self.dialect.already_loaded(name, loading=name in self.loading)
        env = self._model_env(url)
        timeout = fields.get("response_timeout")
        if timeout is not None:
            if not isinstance(timeout, (int, str)) or not str(timeout).isdigit() or int(timeout) < 1:
                raise BadRequest(f"response_timeout must be a positive whole number of seconds, got {timeout!r}")
            env["SAGEMAKER_MODEL_SERVER_TIMEOUT"] = str(timeout)
        # no await since the check above: what is set aside cannot be taken by a concurrent load meanwhile
        reservation = self.dialect.reserve(name, url, fields["url"], self._reservations())
        self.loading[name] = reservation
        load_timeout, timeout_source = self.dialect.load_timeout()
        try:
            await self._make_room(url, workers)
            if self.draining:
                raise ServingError("the endpoint is shutting down", status=503, error_type="ShuttingDown")
            gpu = await self._place_on_gpu(name)
            if gpu is not None:
                env["CUDA_VISIBLE_DEVICES"] = str(gpu)
            server = ModelServer(name, url, self.run_dir, workers, {**env, **reservation.env}, None)
            server.gpu = gpu
            server.start()
            self.loading_servers[name] = server
            why = await server.wait_ready(load_timeout)
            if self.draining:
                why = why or "shutdown"
            if why is not None:
                await server.stop(1.0)
                await asyncio.get_running_loop().run_in_executor(None, server.relay.join, 5)
                if why == "shutdown":
                    raise ServingError(f"the endpoint is shutting down; model {name!r} was not loaded", status=503,
                                       error_type="ShuttingDown")
                if why == "timeout":
                    raise LoadTimeout(f"model {name!r} was not ready within {load_timeout:g} s ({timeout_source}); "
                                      f"its processes were stopped")
                if server.out_of_memory():
                    raise self.dialect.out_of_memory(f"model {name!r} ran out of memory while loading: "
                                                     f"{server.last_error()}; unload other models and retry")
                if server.requirements_failed():
                    raise RequirementsInstallError(f"model {name!r}: installing its code/requirements.txt failed; "
                                                   f"pip said:\n{server.pip_output()}")
                raise ModelNotLoadable(f"model {name!r} could not be loaded: {server.last_error()}")
            self.models[name] = Model(name, str(url), server, reservation)
        finally:
            self.loading.pop(name, None)
            self.loading_servers.pop(name, None)
        log.info("model %s loaded from %s with %d worker(s)", name, url, workers)
        body = json.dumps(self.dialect.loaded_body(name, workers, reservation)).encode()
        await respond(send, 200, body, JSON, echo)
        return 200, len(body), len(raw), name

    async def _place_on_gpu(self, name: str) -> int | None:
        """The visible GPU with the most free memory now (core §13.5), for every worker of this model; None on a
        machine without GPUs."""
        if not self.gpus:
            return None
        free = await asyncio.get_running_loop().run_in_executor(None, gpu_free_memory)
        gpu = emptiest_gpu(self.gpus, free)
        if gpu is None:
            log.warning("model %s: nvidia-smi reported no free memory figures; its workers see every GPU", name)
        else:
            log.info("model %s: GPU %d (%d MiB free of the visible GPUs %s)", name, gpu, free[gpu],
                     ", ".join(f"{g}: {free.get(g, '?')}" for g in self.gpus))
        return gpu

    def _reservations(self) -> list[Reservation]:
        """What the loaded and loading models hold (a model leaves the table when its unload starts; what its
        server still holds until it stopped is the dialect's to notice)."""
        return [model.reservation for model in self.models.values()] + list(self.loading.values())

    def _model_url(self, value: object, name: str) -> Path:
        if not isinstance(value, str) or not value:
            raise BadRequest("url is required: the folder SageMaker extracted the model to")
        url = Path(value[len("file://"):] if value.startswith("file://") else value)
        root = self.mme.models_root.resolve()
        resolved = url.resolve()
        if not url.is_absolute() or not resolved.is_relative_to(root):
            raise BadRequest(f"url {value!r} is outside the models folder {root}; models are loaded from there "
                             f"(SMSERVE_MME_MODELS_ROOT)")
        if not resolved.is_dir():
            raise self.dialect.url_not_found(value, name)
        return resolved

    def _workers(self, value: object) -> int:
        if value is not None:
            if isinstance(value, bool) or not str(value).isdigit() or int(value) < 1:
                raise BadRequest(f"initial_workers must be a whole number of at least 1, got {value!r}")
            return int(value)
        if self.settings.workers is not None:
            return self.settings.workers.value
        return self.mme.workers_per_model

    async def _make_room(self, url: Path, workers: int) -> None:
        """507 when the model would not fit, or (SMSERVE_MME_EVICTION=lru) unload idle models until it does."""
        need = directory_size(url) * workers * 1.2
        while True:
            available, limit = memory_figures()
            keep = limit * self.mme.min_free_memory_pct / 100
            count = len(self.models) + len(self.loading) - 1
            capped = bool(self.mme.max_models) and count >= self.mme.max_models
            short = available - need < keep
            if not capped and not short:
                return
            why = (f"{count} models are loaded (SMSERVE_MME_MAX_MODELS={self.mme.max_models})" if capped else
                   f"it needs about {need / 2**20:.0f} MiB and {available / 2**20:.0f} MiB are available, "
                   f"{self.mme.min_free_memory_pct:g}% of {limit / 2**20:.0f} MiB must stay free "
                   f"(SMSERVE_MME_MIN_FREE_MEMORY_PCT)")
            if self.mme.eviction != "lru":
                raise self.dialect.out_of_memory(f"not enough room for another model: {why}; unload a model and "
                                                 f"retry")
            idle = [m for m in self.models.values() if m.inflight == 0 and not m.unloading]
            if not idle:
                raise self.dialect.out_of_memory(f"not enough room for another model: {why}, and every loaded "
                                                 f"model is busy")
            victim = min(idle, key=lambda m: m.last_used)
            self.evictions += 1
            log.warning("evicting model %s (least recently used) to make room: %s", victim.name, why)
            await self._stop_model(victim)

    # ------------------------------------------------------------ list, describe, unload
    async def _list(self, send, echo, query) -> tuple[int, int, int, str]:
        body = json.dumps(await self.dialect.list_body(dict(self.models), query)).encode()
        await respond(send, 200, body, JSON, echo)
        return 200, len(body), 0, "-"

    def _get(self, name: str, deleting: bool = False) -> Model:
        model = self.models.get(name)
        if model is None or model.unloading:
            raise self.dialect.not_loaded(name, deleting)
        return model

    async def _describe(self, name: str, send, echo) -> tuple[int, int, int, str]:
        body = json.dumps(await self.dialect.describe_body(self._get(name))).encode()
        await respond(send, 200, body, JSON, echo)
        return 200, len(body), 0, name

    async def _unload(self, name: str, send, echo) -> tuple[int, int, int, str]:
        if name in self.loading:
            raise Conflict(f"model {name!r} is loading; delete it once the load has answered")
        model = self._get(name, deleting=True)
        await self._stop_model(model)
        body = json.dumps(self.dialect.unloaded_body(name)).encode()
        await respond(send, 200, body, JSON, echo)
        return 200, len(body), 0, name

    async def _stop_model(self, model: Model) -> None:
        """Out of the routing table at once; in-flight requests finish (within the request deadline); then its
        processes stop."""
        model.unloading = True
        self.models.pop(model.name, None)
        end = time.monotonic() + self.settings.request_timeout.value
        while model.inflight and time.monotonic() < end:
            await asyncio.sleep(0.02)
        await model.server.stop(self.settings.graceful_timeout + 5)
        log.info("model %s unloaded", model.name)

    # ------------------------------------------------------------ invoke
    async def _invoke(self, name: str, scope, receive, send, echo) -> tuple[int, int, int, str]:
        model = self._get(name)
        model.inflight += 1
        model.last_used = time.monotonic()
        try:
            body = await self._body(receive)
            headers = [(k, v) for k, v in scope["headers"] if k not in NOT_FORWARDED]
            if not any(k in (b"x-request-id", b"x-amzn-sagemaker-inference-id") for k, _ in headers):
                headers.append((b"x-request-id", echo[-1][1] if echo else b""))  # one id in both logs
            try:
                answer = await asyncio.wait_for(
                    model.server.upstream.request("POST", "/invocations", headers, body),
                    self.settings.request_timeout.value + 5)
            except (ConnectionRefusedError, FileNotFoundError):  # nothing was sent: it stopped listening, it ends
                self._forget(model, "its server stopped listening")
                raise self.dialect.not_loaded(name) from None
            except (UpstreamClosed, OSError) as exc:
                raise WorkerDied(f"model {name!r}: its server failed while answering ({exc})") from None
            except asyncio.TimeoutError:
                raise ServingError(f"model {name!r} did not answer within the request deadline", status=504,
                                   error_type="DeadlineExceeded") from None
        finally:
            model.inflight -= 1
            model.last_used = time.monotonic()
        if answer.status in (404, 503) and await self.dialect.gone(model):  # e.g. a draining server's 503
            self._forget(model, "it can no longer serve")
            raise self.dialect.not_loaded(name)
        out = [(k, v) for k, v in answer.headers if k not in NOT_FORWARDED and k not in (b"x-request-id",
                                                                                    b"x-amzn-sagemaker-inference-id")]
        out.append((b"content-length", str(len(answer.body)).encode()))
        await send({"type": "http.response.start", "status": answer.status, "headers": [*out, *echo]})
        await send({"type": "http.response.body", "body": bytes(answer.body)})
        return answer.status, len(answer.body), len(body), name

    # ------------------------------------------------------------ metrics and monitoring
    def _metrics(self) -> str:
        lines = ["# HELP smserve_mme_models_loaded Models loaded on this multi-model endpoint.",
                 "# TYPE smserve_mme_models_loaded gauge", f"smserve_mme_models_loaded {len(self.models)}",
                 "# HELP smserve_mme_evictions_total Models unloaded to make room (SMSERVE_MME_EVICTION=lru).",
                 "# TYPE smserve_mme_evictions_total counter", f"smserve_mme_evictions_total {self.evictions}"]
        return "\n".join(lines) + "\n"

    async def watch(self) -> None:
        """A model whose server exited on its own is unregistered: later invokes get 404, and the platform loads
        it again (core §13.3)."""
        while True:
            await asyncio.sleep(0.25)
            for model in list(self.models.values()):
                code = model.server.proc.poll() if model.server.proc else None
                if code is not None:
                    self._forget(model, f"its server exited with status {code}")

    def _forget(self, model: Model, why: str) -> None:
        """A model that can no longer serve although nobody unloaded it (core §13.3) leaves the table at once, so
        that invokes answer 404 and a new load of its name is accepted; its server is stopped in the background."""
        if model.unloading:
            return
        log.error("model %s: %s; unregistered (load it again)", model.name, why)
        model.unloading = True
        self.models.pop(model.name, None)
        stop = asyncio.get_running_loop().create_task(self._stop_model(model))
        self.stops.add(stop)
        stop.add_done_callback(self.stops.discard)

    def begin_shutdown(self) -> None:
        """SIGTERM: /ping turns 503, loads in progress are abandoned (their servers killed), no new load starts."""
        self.draining = True
        for server in self.loading_servers.values():
            server.kill_now()

    async def stop_all(self) -> None:
        self.begin_shutdown()
        await asyncio.gather(*(self._stop_model(m) for m in list(self.models.values())), *list(self.stops))


class FrontServer(uvicorn.Server):
    """uvicorn for the front, with the workers' connection guard (protocol.py: header size and deadlines, idle
    deadline, connection cap), since the front is what faces the network here. SIGTERM stops loads and every
    model server before the process exits 0 (uvicorn would re-raise the signal after serving, and the model
    servers would be left to PR_SET_PDEATHSIG)."""

    def __init__(self, config: uvicorn.Config, front: Front, guard: Guard):
        super().__init__(config)
        self.front = front
        self.guard = guard
        self.sweep: asyncio.Task | None = None

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets)
        self.sweep = asyncio.get_running_loop().create_task(self.guard.sweep(self.server_state.connections))

    def handle_exit(self, sig, frame) -> None:
        self.front.begin_shutdown()
        super().handle_exit(sig, frame)

    @contextlib.contextmanager
    def capture_signals(self):
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    async def shutdown(self, sockets=None) -> None:
        if self.sweep is not None:
            self.sweep.cancel()
        await super().shutdown(sockets)
        await self.front.stop_all()


def serve(settings: Settings) -> int:
    family = resolve_family(settings.family)
    if not family.serves_multi_model:
        log.error("SAGEMAKER_MULTI_MODEL=true: multi-model endpoints are not available for the %s family in this "
                  "smserve release yet; unset it to serve the model in /opt/ml/model", family.display_name)
        return StartupError.exit_status
    run_dir = Path(tempfile.mkdtemp(prefix="smserve-mme-"))
    try:
        sock = bind(settings.port, settings.host)
    except StartupError as exc:
        log.error("%s", exc)
        return exc.exit_status
    front = Front(settings, run_dir)
    guard = Guard(settings, front)
    config = uvicorn.Config(front, loop="uvloop", http=guard.protocol(), lifespan="off", access_log=False,
                            log_config=None, timeout_keep_alive=settings.idle_timeout, server_header=False,
                            date_header=False, timeout_graceful_shutdown=math.ceil(settings.graceful_timeout))
    server = FrontServer(config, front, guard)

    async def main() -> None:
        front.access_log.bind(asyncio.get_running_loop())
        watcher = asyncio.get_running_loop().create_task(front.watch())
        log.info("multi-model endpoint listening on port %d (models from %s; eviction %s)", settings.port,
                 settings.mme.models_root, settings.mme.eviction)
        try:
            await server.serve(sockets=[sock])
        finally:
            watcher.cancel()
            await front.stop_all()  # already done on a signal; here for any other way out

    try:
        uvloop.run(main())
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    return 0
