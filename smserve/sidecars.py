"""Family backend processes beside the workers: started, probed, restarted and stopped by the supervisor.

A family whose models run in a server of their own (TF Serving's `tensorflow_model_server`, or smserve's built-in
TensorFlow backend) declares one `SidecarSpec` per process. The supervisor starts them before the workers (the
backend loads the models while the workers start), waits until every one answers its probe before /ping turns
200, restarts one that exits (/ping is 503 while none serves) and stops them after the workers drained, so that
no in-flight request loses its backend. A sidecar declared not to be restarted ends its server instead: the model
server of one model of a multi-model endpoint stops, its front unregisters the model and the platform loads it
again (tensorflow.md §12). Standard library only: the supervisor imports this before user requirements are
installed.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping

from .zygote import die_with_parent

log = logging.getLogger("smserve.supervisor")
PROBE_EVERY = 0.1  # seconds between probes of a sidecar that is starting
MAX_BACKOFF = 30.0


@dataclass(frozen=True)
class SidecarSpec:
    name: str  # for logs: "tfs-0"
    argv: tuple[str, ...]
    probe: Callable[[], bool]  # True once it serves; cheap, bounded by its own short timeout
    env: Mapping[str, str] = field(default_factory=dict)  # set on top of the supervisor's environment
    ready_timeout: float | None = None  # a family's own bound on the first start (else the startup timeout)
    ready_timeout_source: str = ""  # the variable that set it, for the error
    restart: bool = True  # False: its exit stops this server (SIGTERM to the supervisor: drain, then exit)


@dataclass
class _Running:
    spec: SidecarSpec
    pid: int | None = None
    ready: bool = False
    failures: int = 0
    started: float = 0.0
    next_probe: float = 0.0
    restart_at: float | None = None


class Sidecars:
    def __init__(self, specs: tuple[SidecarSpec, ...], on_ready_count: Callable[[int], None]):
        self._all = [_Running(spec) for spec in specs]
        self._on_ready_count = on_ready_count
        self._env: dict[str, str] = {}
        self._exits: list[tuple[str, int]] = []
        self.stopping = False

    def __bool__(self) -> bool:
        return bool(self._all)

    def pids(self) -> list[int]:
        return [r.pid for r in self._all if r.pid is not None]

    def start(self) -> None:
        # the environment as it is now, before the user's requirements overlay and code directory join
        # PYTHONPATH: a backend restarted later sees the same packages as the first one
        self._env = dict(os.environ)
        for running in self._all:
            self._start(running)
        self._publish()

    def _start(self, running: _Running) -> None:
        env = {**self._env, **running.spec.env}
        pid = os.fork()
        if pid == 0:  # the child: nothing but exec (no Python-level cleanup of the supervisor's state)
            try:
                os.setpgid(0, 0)  # its own group: a Ctrl-C meant for the server reaches it through the supervisor
                die_with_parent(signal.SIGTERM)
                os.execvpe(running.spec.argv[0], list(running.spec.argv), env)
            except BaseException as exc:  # noqa: BLE001
                os.write(2, f"cannot start {running.spec.name} ({running.spec.argv[0]}): {exc}\n".encode())
            finally:
                os._exit(127)
        running.pid, running.ready, running.restart_at = pid, False, None
        running.started = running.next_probe = time.monotonic()
        log.info("started %s (pid %d): %s", running.spec.name, pid, " ".join(running.spec.argv))

    def _publish(self) -> None:
        self._on_ready_count(sum(1 for r in self._all if r.ready))

    def all_ready(self) -> bool:
        return all(r.ready for r in self._all)

    def not_ready(self) -> list[str]:
        return [r.spec.name for r in self._all if not r.ready]

    def overdue(self) -> list[SidecarSpec]:
        """Sidecars still not serving after their own ready timeout."""
        now = time.monotonic()
        return [r.spec for r in self._all if not r.ready and r.pid is not None and r.spec.ready_timeout is not None
                and now - r.started > r.spec.ready_timeout]

    def claim(self, pid: int, status: int) -> bool:
        """The supervisor reaped `pid`: True when it was a sidecar (then it is restarted after a back-off)."""
        for running in self._all:
            if running.pid == pid:
                self._exited(running, os.waitstatus_to_exitcode(status))
                return True
        return False

    def _exited(self, running: _Running, code: int) -> None:
        was_serving = running.ready
        running.pid, running.ready = None, False
        self._exits.append((running.spec.name, code))
        if not running.spec.restart and not self.stopping:
            if was_serving:  # (before that, the supervisor's startup fails on this exit)
                # readiness is not withdrawn: until the drain, requests reach the family's handler, which says that
                # the model is gone (a 404 that makes the platform load it again) rather than a 503 to retry
                log.error("%s exited with status %s; it is not restarted: stopping this server", running.spec.name,
                          code)
                os.kill(os.getpid(), signal.SIGTERM)  # the supervisor's own stop path, as on a platform stop
            return
        self._publish()
        if self.stopping:
            return
        running.failures += 1
        delay = 0.0 if running.failures <= 1 else min(MAX_BACKOFF, 2.0 ** (running.failures - 2))
        running.restart_at = time.monotonic() + delay
        log.warning("%s exited with status %s; restarting in %.0f s", running.spec.name, code, delay)

    def poll(self) -> list[tuple[str, int]]:
        """Reap, restart and probe; returns (name, exit status) of the sidecars that exited during this poll."""
        now = time.monotonic()
        for running in self._all:
            if running.pid is not None:
                try:
                    pid, status = os.waitpid(running.pid, os.WNOHANG)
                except ChildProcessError:
                    pid, status = running.pid, 0
                if pid:
                    self._exited(running, os.waitstatus_to_exitcode(status))
            if running.pid is None and running.restart_at is not None and now >= running.restart_at:
                self._start(running)
            if running.pid is not None and not running.ready and now >= running.next_probe:
                running.next_probe = now + PROBE_EVERY
                if running.spec.probe():
                    running.ready = True
                    running.failures = 0
                    log.info("%s is serving (%.2f s after its start)", running.spec.name, now - running.started)
                    self._publish()
        exited, self._exits = self._exits, []
        return exited

    def stop(self, timeout: float) -> None:
        """SIGTERM, then SIGKILL what is left after `timeout` seconds."""
        self.stopping = True
        for pid in self.pids():
            signal_quietly(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self.pids() and time.monotonic() < deadline:
            self.poll()
            time.sleep(0.02)
        kill_and_reap(self.pids, self.poll)


def signal_quietly(pid: int, signum: int) -> None:
    """Signal a child that may have exited already."""
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def kill_and_reap(pids: Callable[[], list[int]], reap: Callable[[], object], wait: float = 5.0) -> None:
    """SIGKILL every child `pids()` lists and reap them, for at most `wait` seconds."""
    for pid in pids():
        signal_quietly(pid, signal.SIGKILL)
    end = time.monotonic() + wait
    while pids() and time.monotonic() < end:
        reap()
        time.sleep(0.01)
