"""The zygote: a child of the supervisor that imports the framework once and forks every worker from it.

Each worker importing torch or mxnet itself costs about 1.5 s of CPU per worker, and N workers on N cores import
at the same time (cold start, restarts). The supervisor must not import a framework (core §1 step 5, mxnet.md
item 28): a framework's threads or device context would be inherited half-alive by every fork. So a separate
process does it, right after the requirements install (the user's pins win) with the shared thread variables
exported. It forks only if the imports left it a single thread; it never touches a device, and a worker sets its
own CUDA_VISIBLE_DEVICES before anything initialises CUDA.

Workers stay children of the supervisor: the zygote forks a short-lived middle process that forks the worker and
exits, so the worker is re-parented to the supervisor, a child subreaper (PR_SET_CHILD_SUBREAPER), which reaps and
restarts it as any other worker. The pipes carry one line per request ("slot accept_at_once") and one per answer
(the worker's pid, or "error <text>").
"""

from __future__ import annotations

import ctypes
import gc
import importlib
import logging
import os
import select
import signal
import sys
import time
from pathlib import Path
from typing import Callable

from . import logs

log = logging.getLogger("smserve.zygote")
NAME = b"smserve-zygote"  # /proc/<pid>/comm: how tools and tests tell it from the workers
STANDIN_NAME = b"smserve-standin"
_PR_SET_PDEATHSIG, _PR_SET_NAME, _PR_SET_CHILD_SUBREAPER = 1, 15, 36


def _prctl(option: int, value) -> bool:
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def set_process_name(name: bytes) -> bool:
    """/proc/<pid>/comm (15 bytes), what ps and top show: tells the zygote and the stand-in from the workers."""
    return _prctl(_PR_SET_NAME, ctypes.c_char_p(name[:15]))


def die_with_parent(signum: int) -> bool:
    """The kernel sends `signum` to this process when the process that forked it exits, however it exits."""
    return _prctl(_PR_SET_PDEATHSIG, signum)


def become_subreaper() -> bool:
    """Orphans below the supervisor (the workers the zygote's middle process leaves) become its children."""
    return _prctl(_PR_SET_CHILD_SUBREAPER, 1)


def threads() -> list[str]:
    """The names of this process's threads (one entry per thread)."""
    names = []
    try:
        for task in os.listdir("/proc/self/task"):
            try:
                names.append(Path(f"/proc/self/task/{task}/comm").read_text().strip())
            except OSError:
                names.append("?")
    except OSError:
        return ["?"]
    return names


class Zygote:
    """The supervisor's handle on the zygote process."""

    def __init__(self, pid: int, requests: int, answers: int):
        self.pid = pid
        self._requests = requests
        self._answers = answers
        self._pending = b""

    @classmethod
    def start(cls, modules: tuple[str, ...], become_worker: Callable[[int, bool], None]) -> "Zygote":
        """Fork the zygote. It imports `modules` on its own while the supervisor goes on; `become_worker(slot,
        accept_at_once)` runs in each worker it forks and never returns."""
        request_r, request_w = os.pipe()
        answer_r, answer_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                os.close(request_w)
                os.close(answer_r)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C reaches the supervisor, which stops us
                _serve(request_r, answer_w, modules, become_worker)
                status = 0
            except BaseException:  # noqa: BLE001
                log.exception("the zygote failed; workers are forked from the supervisor instead")
            finally:
                os._exit(status)
        os.close(request_r)
        os.close(answer_w)
        return cls(pid, request_w, answer_r)

    def fds(self) -> tuple[int, int]:
        """The supervisor's ends of the pipes: a worker forked by the supervisor itself closes them."""
        return self._requests, self._answers

    def spawn(self, slot: int, accept_at_once: bool, give_up: Callable[[], bool]) -> int:
        """Ask for a worker and wait for its pid. The first answer waits for the framework import; `give_up()` is
        polled meanwhile (a stop signal). Raises OSError when the zygote cannot fork one."""
        try:
            os.write(self._requests, f"{slot} {int(accept_at_once)}\n".encode())
        except OSError as exc:
            raise OSError(f"the zygote is gone ({exc})") from None
        while b"\n" not in self._pending:
            if give_up():
                raise OSError("stopping")
            ready, _, _ = select.select([self._answers], [], [], 0.05)
            if ready:
                chunk = os.read(self._answers, 256)
                if not chunk:
                    raise OSError("the zygote exited")
                self._pending += chunk
        line, _, self._pending = self._pending.partition(b"\n")
        text = line.decode()
        if text.startswith("error "):
            raise OSError(text[len("error "):])
        return int(text)

    def stop(self) -> None:
        """Close the pipes and kill it: it holds the shared listening socket, which must close with the supervisor's
        copy when draining starts."""
        for fd in (self._requests, self._answers):
            try:
                os.close(fd)
            except OSError:
                pass
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _serve(requests: int, answers: int, modules: tuple[str, ...], become_worker: Callable[[int, bool], None]) -> None:
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() == 1 and os.getpid() != 1:  # the supervisor died before PDEATHSIG was set
        return
    try:
        own_name = Path("/proc/self/comm").read_bytes().strip()[:15]
    except OSError:
        own_name = b"python3"
    set_process_name(NAME)
    logs.set_label("zygote")
    started = time.monotonic()
    gc.disable()  # collections while torch imports cost a third of the import time; nothing here is garbage
    try:
        for module in modules:
            importlib.import_module(module)
    except Exception as exc:  # noqa: BLE001 - each worker imports it again and reports the error in full
        log.warning("the zygote could not import %s (%s: %s); each worker imports it itself", module,
                    type(exc).__name__, exc)
    finally:
        # the imported objects leave the collector's generations: a worker's collections never walk them, so they
        # neither cost time nor copy the shared pages they live on
        gc.freeze()
        gc.enable()
    log.debug("zygote (pid %d) imported %s in %.2f s", os.getpid(), ", ".join(modules), time.monotonic() - started)
    # Checked once, before the first fork: the imports must leave one thread, since a fork copies the locks that
    # other threads hold and loses those threads. Later forks are the framework's to handle: mxnet stops its engine
    # threads before a fork and restarts them after (pthread_atfork), in this process too.
    running = threads()
    refusal = None
    if len(running) > 1:
        refusal = (f"the zygote runs {len(running)} threads ({', '.join(running)}) after importing "
                   f"{', '.join(modules)}; forking from it is unsafe")
    with open(requests, "rb", buffering=0) as incoming:
        for line in iter(incoming.readline, b""):
            if refusal is not None:
                os.write(answers, f"error {refusal}\n".encode())
                continue
            slot, accept_at_once = (int(x) for x in line.split())
            middle = os.fork()
            if middle == 0:
                try:
                    set_process_name(own_name)  # the workers keep the supervisor's name
                    worker = os.fork()
                    if worker == 0:
                        os.close(answers)
                        incoming.close()
                        become_worker(slot, bool(accept_at_once))
                    os.write(answers, f"{worker}\n".encode())
                finally:
                    os._exit(0)
            os.waitpid(middle, 0)
    sys.stdout.flush()
