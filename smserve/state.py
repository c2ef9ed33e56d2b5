"""What the supervisor hands its workers: the spec of a worker, and readiness and worker states shared through
anonymous shared memory.

Each worker answers /ping from this table, so health never waits on a busy worker or on an IPC round trip.
Standard library only: the supervisor imports this before requirements are installed.
"""

from __future__ import annotations

import multiprocessing
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import Settings
    from .families.base import Family
    from .layout import Layout
    from .resources import WorkerPlan

BOOTING, LOADING, SERVING, DRAINING = 0, 1, 2, 3
STARTING, READY, BUSY, RESTARTING, FAILED, STOPPED = 0, 1, 2, 3, 4, 5
STATE_NAMES = {STARTING: "starting", READY: "ready", BUSY: "busy", RESTARTING: "restarting"}
_GLOBAL = 3  # phase, worker count, sidecars serving (-1: the family has none)
_SLOT = 3  # state, busy_since, pid
EXIT_LOAD_FAILED = 4  # a worker's exit status for "the model could not be loaded", not a crash


class SharedState:
    """`workers` serving slots, plus one slot (index `workers`) for the stand-in that answers while requirements
    are installed; the stand-in never counts towards readiness."""

    def __init__(self, workers: int):
        self.workers = workers
        self.standin_slot = workers
        self._values = multiprocessing.RawArray("d", _GLOBAL + _SLOT * (workers + 1))
        self._values[1] = workers
        self._values[2] = -1

    # ---- phase (supervisor writes, workers read)
    @property
    def phase(self) -> int:
        return int(self._values[0])

    @phase.setter
    def phase(self, value: int) -> None:
        self._values[0] = value

    # ---- family backend processes (sidecars.py; supervisor writes, workers read)
    def set_sidecars_serving(self, count: int) -> None:
        self._values[2] = count

    def sidecars_serving(self) -> int:
        """-1 when the family runs none."""
        return int(self._values[2])

    # ---- per worker slot
    def _at(self, slot: int, field: int) -> int:
        return _GLOBAL + slot * _SLOT + field

    def worker_state(self, slot: int) -> int:
        return int(self._values[self._at(slot, 0)])

    def set_worker_state(self, slot: int, value: int) -> None:
        self._values[self._at(slot, 0)] = value

    def busy_since(self, slot: int) -> float:
        return self._values[self._at(slot, 1)]

    def set_busy_since(self, slot: int, since: float) -> None:
        """0 when idle; else the monotonic start time of the oldest request the worker is executing."""
        self._values[self._at(slot, 1)] = since

    def set_pid(self, slot: int, pid: int) -> None:
        self._values[self._at(slot, 2)] = pid

    def ready(self) -> bool:
        """/ping is 200: the boot finished, a worker can serve and, where the family runs backends, one serves."""
        if self.phase != SERVING or self._values[2] == 0:
            return False
        return any(self.worker_state(i) in (READY, BUSY) for i in range(self.workers))

    def all_ready(self) -> bool:
        return all(self.worker_state(i) in (READY, BUSY) for i in range(self.workers))

    def counts(self) -> dict[str, int]:
        out = {name: 0 for name in STATE_NAMES.values()}
        for i in range(self.workers):
            name = STATE_NAMES.get(self.worker_state(i))
            if name:
                out[name] += 1
        return out


@dataclass(frozen=True)
class WorkerSpec:
    settings: "Settings"
    family: "Family"
    layout: "Layout"
    plan: "WorkerPlan"
    state: SharedState
    sock: socket.socket
    site_dirs: tuple[str, ...]  # the requirements overlay, first on sys.path


def now() -> float:
    return time.monotonic()
