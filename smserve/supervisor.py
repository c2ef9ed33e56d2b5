"""The supervisor: boot sequence, worker processes, restarts, hung-worker recycling and drain (spec core §1, §15–§17).

It never imports user code or a framework (fork and CUDA safety). Until code/requirements.txt is installed it
imports nothing but the standard library and smserve's own light modules; then it puts the requirements overlay
first on its sys.path and imports the HTTP stack and numpy once, so that what it and every worker forked from it
use is the user's version where the user pinned one (requirements.py), and workers do not each import them again.
The framework is imported once by the zygote (zygote.py), which forks the workers.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

from . import __version__, layout as layout_mod, logs, neuron, requirements, zygote as zygote_mod
from .sidecars import Sidecars, kill_and_reap, signal_quietly as _signal
from .config import Settings
from .errors import StartupError
from .families import resolve_family
from .listen import bind, bind_unix
from .resources import plan_workers, worker_environment
from .state import (DRAINING, EXIT_LOAD_FAILED, LOADING, READY, RESTARTING, SERVING, STARTING, STOPPED,
                    SharedState, WorkerSpec)

log = logging.getLogger("smserve.supervisor")
POLL = 0.05
READY_POLL = 0.01  # while workers load: the first ready answer is not held back by the poll


def _oom_kills() -> int:
    try:
        for line in Path("/sys/fs/cgroup/memory.events").read_text().splitlines():
            if line.startswith("oom_kill "):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


class Supervisor:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.family = resolve_family(settings.family)
        self.started = time.monotonic()
        self.stop_signal: int | None = None
        self.pids: dict[int, int] = {}  # pid -> slot
        self.standin_pid: int | None = None  # answers while requirements are installed
        self.stopping = False  # workers exit because the supervisor stops them
        self.restart_at: dict[int, float] = {}  # slot -> monotonic time of the next start
        self.failures: dict[int, int] = {}  # slot -> consecutive crashes
        self.killed_hung: dict[int, float] = {}  # pid of a hung worker being recycled -> when to SIGKILL it
        self.run_dir = Path(tempfile.mkdtemp(prefix="smserve-"))
        self.metrics = None
        self.zygote: zygote_mod.Zygote | None = None
        self.sidecars = Sidecars((), lambda count: None)

    # ------------------------------------------------------------ boot
    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        try:
            return self._run()
        except StartupError as exc:
            log.error("%s", exc)
            return exc.exit_status
        finally:
            # a failed start: the stand-in finishes the /ping it is answering (not cut mid-body) before the rest go
            self._retire_standin(wait=2.0)
            self._stop_workers()
            self.sidecars.stop(1.0)
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def _on_signal(self, signum, frame) -> None:
        if self.stop_signal is None:
            self.stop_signal = signum

    def _run(self) -> int:
        s = self.settings
        for level, text in s.notices:
            log.log(level, "%s", text)
        from . import metrics as metrics_mod  # light: prometheus_client is imported when metrics are created

        metrics_mod.prepare(self.run_dir / "metrics")
        if s.unix_socket is not None:  # one model of a multi-model endpoint, behind its front
            self.sock = bind_unix(s.unix_socket)
            log.info("model %s: listening on %s", s.served_model_name, s.unix_socket)
        else:
            self.sock = bind(s.port, s.host)
            log.info("listening on port %d; /ping answers 503 until the model is loaded", s.port)

        layout = self.family.resolve_layout(s, self.run_dir)
        for warning in layout.warnings:
            log.warning("%s", warning)
        self.family.check_layout(s, layout)
        plan = plan_workers(s, layout.model_dir, self.family.footprint_mb,
                            lambda cpus: self.family.default_workers(s, layout, cpus))
        self._summary(layout, plan)
        if s.neuron is not None:  # inf1: neuron-ls, Neuron-compiled models need a device, the Neuron defaults
            neuron.prepare(s.neuron, layout.model_dir)

        self.state = SharedState(plan.workers)
        # the family's backends (sidecars.py) load the models while requirements install and workers start; they
        # see the image's packages only, like AWS's tensorflow_model_server
        specs = self.family.sidecars(s, layout, plan, self.run_dir)
        if specs:
            self.sidecars = Sidecars(specs, self.state.set_sidecars_serving)
            self.sidecars.start()
        if layout.requirements and self.family.requirements_skipped_with_lib and (layout.code_dir / "lib").is_dir():
            log.warning("%s is not installed: %s exists (the %s family installs requirements only without "
                        "code/lib, as AWS's image does); put the packages in code/lib or remove it",
                        layout.requirements, layout.code_dir / "lib", self.family.display_name)
            layout = dataclasses.replace(layout, requirements=None)
        install = layout.requirements is not None and not s.skip_requirements
        prefix = (requirements.cache_prefix(layout.requirements, s.requirements_cache,
                                            self.family.requirement_constraints)
                  if install and s.requirements_cache is not None else self.run_dir / "requirements")
        site_dirs = (str(requirements.site_dir(prefix)),) if install else ()
        prepend, append = layout.import_paths()
        os.environ["PYTHONPATH"] = os.pathsep.join(  # for the user's subprocesses
            [*prepend, *site_dirs, *append, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))])
        self.spec = WorkerSpec(s, self.family, layout, plan, self.state, self.sock, site_dirs)

        if layout.requirements and s.skip_requirements:
            log.info("SMSERVE_SKIP_REQUIREMENTS=true: not installing %s", layout.requirements)
        if install:
            self._spawn(self.state.standin_slot, standin=True)
            requirements.install(layout.requirements, prefix, s, self.family.requirement_constraints,
                                 self.family.constraint_reason)
            requirements.activate(site_dirs)
            os.environ["PATH"] = os.pathsep.join([str(prefix / "bin"), os.environ.get("PATH", "")])
        if s.metrics:
            self.metrics = metrics_mod.Metrics()
        if self.stop_signal is None:
            self._preload_worker_modules()
            if self.zygote is not None and self.standin_pid is None:
                # no worker exists while the zygote imports the framework: the stand-in answers /ping 503 meanwhile
                self._spawn(self.state.standin_slot, standin=True)
            for slot in range(plan.workers):
                self._spawn(slot)
        if self.stop_signal is not None:
            return self._drain()
        self.state.phase = LOADING
        status = self._wait_ready()
        if status is not None:
            return status
        self._retire_standin()
        self.state.phase = SERVING
        log.info("ready: %d workers serving on port %d after %.2f s", plan.workers, s.port,
                 time.monotonic() - self.started)
        return self._monitor()

    def _summary(self, layout: layout_mod.Layout, plan) -> None:
        s, fam = self.settings, self.family
        module = layout.module
        if module:
            hooks = [h for h in (*layout_mod.HOOK_NAMES, *fam.extra_hook_names) if h in module.defined]
            module_line = f"{module.path} (import name {module.name})"
        else:
            hooks = []
            module_line = (f"no user module {s.program} found in {', '.join(layout.searched)}; "
                           f"using {fam.display_name} defaults")
        devices = ", ".join(f"worker-{i}: {'GPU ' + ','.join(map(str, g)) if g else 'cpu'}"
                            for i, g in enumerate(plan.gpu_sets))
        lines = [
            f"smserve {__version__} starting",
            f"  family            {fam.name} ({s.variant}), {fam.framework_distribution} {fam.framework_version()}",
            f"  model dir         {layout.model_dir}",
            f"  code dir          {layout.code_dir}{'' if layout.code_dir.is_dir() else ' (absent)'}",
            f"  user module       {module_line}",
            f"  hooks found       {', '.join(hooks) if hooks else 'none (defaults)'}",
            f"  workers           {plan.workers} ({plan.derivation})",
            f"  threads/worker    {plan.threads} (OMP/MKL/OpenBLAS{'; user-set: ' + ','.join(sorted(s.user_thread_vars)) if s.user_thread_vars else ''})",
            f"  devices           {devices}",
            f"  request deadline  {s.request_timeout.value:g} s ({s.request_timeout.source}; seconds)",
            f"  startup timeout   {s.startup_timeout:g} s",
            f"  payload limit     {s.max_request_bytes.value} bytes ({s.max_request_bytes.source})",
        ]
        if s.neuron is not None:
            lines += neuron.summary_lines(s.neuron)
        log.info("%s", "\n".join(lines))

    # ------------------------------------------------------------ workers
    def _spawn(self, slot: int, standin: bool = False) -> None:
        """Start a worker: forked by the zygote, which has the framework imported already, or by the supervisor
        when there is none (the stand-in, SMSERVE_PRELOAD_FRAMEWORK=false, a zygote that failed). It accepts at
        once during the first boot, unless the stand-in answers meanwhile."""
        accept_at_once = standin or (self.state.phase != SERVING and self.standin_pid is None)
        self.state.set_worker_state(slot, STARTING)
        pid = None
        if self.zygote is not None and not standin:
            try:
                pid = self.zygote.spawn(slot, accept_at_once, lambda: self.stop_signal is not None)
            except OSError as exc:
                self._stop_zygote()
                if self.stop_signal is not None:
                    return
                log.warning("%s; workers are forked from the supervisor and import the framework themselves", exc)
        if pid is None:
            pid = os.fork()
            if pid == 0:
                if self.zygote is not None:
                    for fd in self.zygote.fds():
                        os.close(fd)
                self._become_worker(slot, accept_at_once, standin)
        self.pids[pid] = slot
        self.state.set_pid(slot, pid)
        if standin:
            self.standin_pid = pid

    def _become_worker(self, slot: int, accept_at_once: bool, standin: bool = False) -> None:
        """The forked child's side: its environment is set before it imports anything that reads it. Never returns."""
        try:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.environ.update(worker_environment(self.spec.plan, slot, self.settings,
                                                 self.family.thread_environment(self.spec.plan.threads)))
            from . import worker

            worker.run(self.spec, slot, accept_at_once, standin)
        except BaseException:  # noqa: BLE001
            logging.getLogger("smserve.worker").exception("worker %d failed", slot)
        finally:
            os._exit(1)

    def _preload_worker_modules(self) -> None:
        """Import the worker's modules (uvicorn, numpy, the codecs) once here, and start the zygote that imports the
        framework and the family defaults (unless SMSERVE_PRELOAD_FRAMEWORK=false), so that workers are forked with
        them instead of each importing them while the others do the same on the same CPUs (cold start). Only now:
        the requirements are installed and first on sys.path, so these are the user's versions where pinned, and
        the thread variables every worker shares are exported first (BLAS and OpenMP read them when they load)."""
        env = worker_environment(self.spec.plan, 0, self.settings,
                                 self.family.thread_environment(self.spec.plan.threads))
        env.pop("CUDA_VISIBLE_DEVICES", None)  # per worker, set in the child before anything initialises CUDA
        os.environ.update(env)
        worker_modules = tuple(f"{__package__}.{module}" for module in ("codecs", "worker"))
        family = self.family
        # one worker imports the framework once either way, and a fork is not free: MXNet restarts its engine in
        # the child (an MXNet model server with 1 worker was ready after 3.4 s through the zygote, 1.8 s without)
        if (self.settings.preload_framework and family.preload_modules and self.spec.plan.workers > 1
                and (family.preload_with_gpus or not self.spec.plan.gpus)):
            if zygote_mod.become_subreaper():
                # started first: it imports the worker modules itself, in parallel with this process (2 cores)
                self.zygote = zygote_mod.Zygote.start(worker_modules + family.preload_modules, self._become_worker)
            else:
                log.warning("cannot become a child subreaper; workers import the framework themselves")
        for module in worker_modules:  # for the stand-in and for workers forked here
            importlib.import_module(module)

    def _retire_standin(self, wait: float | None = None) -> None:
        """Every worker is ready (or the start failed): the stand-in stops accepting, answers what it holds and
        exits. Readiness waits only for the first (about 10 ms); the monitor reaps it when it exits."""
        if self.standin_pid is None:
            return
        _signal(self.standin_pid, signal.SIGTERM)
        deadline = time.monotonic() + (self.settings.graceful_timeout + 1.0 if wait is None else wait)
        while self.standin_pid is not None and time.monotonic() < deadline:
            if self.state.worker_state(self.state.standin_slot) == STOPPED:
                return
            self._reap()
            time.sleep(0.005)
        if self.standin_pid is not None:
            _signal(self.standin_pid, signal.SIGKILL)

    def _reap(self) -> list[tuple[int, int, int]]:
        """(slot, exit status or -signal, pid) for every worker that exited."""
        exited = []
        while self.pids:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            slot = self.pids.pop(pid, None)
            if slot is None and self.sidecars.claim(pid, status):
                continue
            if slot is None:  # the zygote, or an orphan of the user's code adopted by this subreaper
                if self.zygote is not None and pid == self.zygote.pid:
                    if self.stop_signal is None:
                        log.warning("the zygote exited (%s); workers import the framework themselves",
                                    os.waitstatus_to_exitcode(status))
                    self._stop_zygote()
                continue
            code = os.waitstatus_to_exitcode(status)
            if self.metrics is not None:
                from .metrics import Metrics

                Metrics.process_exited(pid)
            if pid == self.standin_pid:
                self.standin_pid = None
                if not self.stopping and code != 0:
                    log.warning("the stand-in that answers while requirements install exited with status %s", code)
                continue
            exited.append((slot, code, pid))
        return exited

    def _wait_ready(self) -> int | None:
        deadline = self.started + self.settings.startup_timeout
        retries = self.settings.model_load_retries
        while True:
            if self.stop_signal is not None:
                return self._drain()
            for name, code in self.sidecars.poll():
                log.error("%s exited with status %s while loading the models (its log is above); stopping. Fix the "
                          "model and restart the container", name, code)
                return 1
            for spec in self.sidecars.overdue():
                log.error("%s did not serve every model within %g s (%s); stopping", spec.name, spec.ready_timeout,
                          spec.ready_timeout_source)
                return 1
            for slot, code, pid in self._reap():
                if retries > 0:
                    retries -= 1
                    log.warning("worker %d exited with status %s while loading; retrying (%d retries left, "
                                "SMSERVE_MODEL_LOAD_RETRIES)", slot, code, retries)
                    self._spawn(slot)
                    continue
                reason = "could not load the model (traceback above)" if code == EXIT_LOAD_FAILED else \
                    f"exited with status {code} while loading"
                log.error("worker %d %s; stopping. Fix the model or code and restart the container", slot, reason)
                return 1
            if self.state.all_ready() and self.sidecars.all_ready():
                return None
            if time.monotonic() > deadline:
                missing = [f"worker-{i}" for i in range(self.state.workers) if self.state.worker_state(i) != READY]
                missing += self.sidecars.not_ready()
                log.error("startup did not finish within SAGEMAKER_STARTUP_TIMEOUT=%g s; not ready: %s",
                          self.settings.startup_timeout, ", ".join(missing))
                return 1
            time.sleep(READY_POLL)

    def _monitor(self) -> int:
        s = self.settings
        hung_after = s.request_timeout.value + s.hung_grace
        hung_stop_wait = min(s.graceful_timeout, s.request_timeout.value + 1.0)
        oom_seen = _oom_kills()
        while self.stop_signal is None:
            now = time.monotonic()
            if self.sidecars:
                self.sidecars.poll()
            for slot, code, pid in self._reap():
                if pid in self.killed_hung:
                    reason = "hung"
                    del self.killed_hung[pid]
                else:
                    oom_now = _oom_kills()
                    reason = "oom" if oom_now > oom_seen else "crash"
                    oom_seen = oom_now
                if s.unix_socket is not None and reason != "hung":
                    # a model of a multi-model endpoint: its front unregisters it when this server ends, and the
                    # platform loads it again (core §13.3), instead of this server restarting the worker
                    log.error("worker %d (pid %d) of model %s exited with status %s (%s); stopping this model "
                              "server so that the model is unregistered", slot, pid, s.served_model_name, code, reason)
                    self.stop_signal = signal.SIGTERM
                    break
                failures = self.failures.get(slot, 0) + (0 if reason == "hung" else 1)
                self.failures[slot] = failures
                # a first crash is replaced at once (the others are serving alone meanwhile); repeated crashes of
                # the same slot back off 1, 2, 4 ... 30 s so that a crash loop cannot monopolise the CPUs
                delay = 0.0 if reason == "hung" or failures <= 1 else min(30.0, 2.0 ** (failures - 2))
                log.warning("worker %d (pid %d) exited with status %s (%s); restarting in %.0f s",
                            slot, pid, code, reason, delay)
                if self.metrics is not None:
                    self.metrics.restarts.labels(reason).inc()
                self.state.set_worker_state(slot, RESTARTING)
                self.state.set_busy_since(slot, 0.0)
                self.restart_at[slot] = now + delay
            for slot, when in list(self.restart_at.items()):
                if now >= when:
                    del self.restart_at[slot]
                    self._spawn(slot)
            for pid, slot in self.pids.items():
                state = self.state.worker_state(slot)
                if state == READY and self.failures.get(slot):
                    self.failures[slot] = 0
                busy = self.state.busy_since(slot)
                if busy and now - busy > hung_after and pid not in self.killed_hung:
                    # SIGTERM first: the worker stops accepting, finishes writing the answers of its other
                    # requests (each one ends by its own deadline) and exits; SIGKILL if it cannot.
                    log.error("worker %d (pid %d) has been executing one request for %.0f s (deadline + "
                              "SMSERVE_HUNG_GRACE = %g s); recycling it (SIGKILL in %.0f s if it does not stop)",
                              slot, pid, now - busy, hung_after, hung_stop_wait)
                    self.killed_hung[pid] = now + hung_stop_wait
                    _signal(pid, signal.SIGTERM)
            for pid, kill_at in self.killed_hung.items():
                if now >= kill_at and pid in self.pids:
                    _signal(pid, signal.SIGKILL)
            time.sleep(POLL)
        return self._drain()

    # ------------------------------------------------------------ shutdown
    def _drain(self) -> int:
        log.info("received %s: draining in-flight requests (up to %g s)",
                 signal.Signals(self.stop_signal).name if self.stop_signal else "stop", self.settings.graceful_timeout)
        self.stopping = True
        state = getattr(self, "state", None)
        if state is not None:
            state.phase = DRAINING
        self._stop_zygote()
        sock = getattr(self, "sock", None)
        if sock is not None:
            sock.close()
        for pid in list(self.pids):
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.settings.graceful_timeout
        while self.pids and time.monotonic() < deadline:
            self._reap()
            time.sleep(POLL)
        if self.pids:
            log.warning("workers %s still running after SMSERVE_GRACEFUL_TIMEOUT=%g s; killing them",
                        sorted(self.pids.values()), self.settings.graceful_timeout)
        self._stop_workers()
        # the backends last: every request the workers still answered had its backend
        self.sidecars.stop(max(1.0, deadline - time.monotonic()))
        log.info("stopped")
        return 0

    def _stop_zygote(self) -> None:
        if self.zygote is not None:
            self.zygote.stop()
            self.zygote = None

    def _stop_workers(self) -> None:
        self.stopping = True
        self.sidecars.stopping = True
        self._stop_zygote()
        kill_and_reap(lambda: list(self.pids), self._reap)


def serve(settings: Settings) -> int:
    logs.configure(settings)
    if settings.multi_model:
        from .mme.front import serve as serve_models

        return serve_models(settings)
    return Supervisor(settings).run()
