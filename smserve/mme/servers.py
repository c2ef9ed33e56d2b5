"""One loaded model = one model server process: `smserve serve` for that model directory, listening on a Unix
socket in the front's private run folder, with its own supervisor and workers (its own sys.path, requirements
and libraries; unloading returns all of its memory). The front starts it, waits for its /ping, stops it."""

from __future__ import annotations

import asyncio
import ctypes
import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from pathlib import Path

from .upstream import Upstream, UpstreamClosed

PR_SET_PDEATHSIG = 1
OOM_STATUSES = (-signal.SIGKILL, 137)


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass
    os.setpgid(0, 0)  # its own process group: stopping it reaches its workers


class ModelServer:
    def __init__(self, name: str, url: Path, run_dir: Path, workers: int, env: dict[str, str],
                 timeout: float | None):
        self.name, self.url, self.workers = name, url, workers
        digest = hashlib.sha256(name.encode()).hexdigest()[:12]
        # one socket per load: a server of the same name that is still stopping never touches the new one's
        self.socket_path = run_dir / f"model-{digest}-{uuid.uuid4().hex[:8]}.sock"
        self.env = {**env, "SMSERVE_UNIX_SOCKET": str(self.socket_path), "SMSERVE_SERVED_MODEL_NAME": name,
                    "SAGEMAKER_MODEL_SERVER_WORKERS": str(workers),
                    "SMSERVE_REQUIREMENTS_CACHE": str(run_dir / "requirements")}
        self.env.pop("SAGEMAKER_MULTI_MODEL", None)
        self.response_timeout = timeout
        self.proc: subprocess.Popen | None = None
        self.relay: threading.Thread | None = None
        self.tail: deque[str] = deque(maxlen=40)  # its last log lines, for load errors
        self.upstream = Upstream(str(self.socket_path))
        self.loaded_at = 0.0
        self.gpu: int | None = None  # the GPU its workers were placed on (host index), None on CPU

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "smserve", "serve", "--model-dir", str(self.url)],
                                     env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     preexec_fn=_die_with_parent)
        self.relay = threading.Thread(target=self._relay_logs, name=f"log-{self.name[:20]}", daemon=True)
        self.relay.start()

    def _relay_logs(self) -> None:
        """Its log lines go to the container log as they come, and the last ones are kept for errors."""
        for line in self.proc.stdout:
            text = line.decode("utf-8", "replace")
            self.tail.append(text.rstrip("\n"))
            sys.stdout.write(text)
            sys.stdout.flush()

    async def wait_ready(self, timeout: float) -> str | None:
        """None once its /ping answers 200; else why not ("exited", "timeout")."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                return "exited"
            if self.socket_path.exists():
                try:
                    answer = await asyncio.wait_for(self.upstream.request("GET", "/ping", [], b""), 2)
                    if answer.status == 200:
                        self.loaded_at = time.time()
                        return None
                except (OSError, UpstreamClosed, asyncio.TimeoutError):
                    pass
            await asyncio.sleep(0.05)
        return "timeout"

    def out_of_memory(self) -> bool:
        text = "\n".join(self.tail)
        return (self.proc is not None and self.proc.poll() in OOM_STATUSES) or any(
            marker in text for marker in ("MemoryError", "out of memory", "OutOfMemory", "killed by signal 9",
                                          "OOM", "with status -9 ", "(oom)"))

    def requirements_failed(self) -> bool:
        return any("pip failed with status" in line for line in self.tail)

    def pip_output(self) -> str:
        """pip's last lines, from the model server's log of the failed install."""
        lines = list(self.tail)
        start = next(i for i, line in enumerate(lines) if "pip failed with status" in line)
        return "\n".join(line for line in lines[start + 1:start + 16] if " INFO " not in line)

    def last_error(self) -> str:
        """The most telling of its last log lines: the first error line (ours, glog's, a TF backend's, a traceback),
        else the last line."""
        errors = [line for line in self.tail if " ERROR " in line or line.startswith(("E ", "error: ", "Traceback"))]
        return (errors[0] if errors else (self.tail[-1] if self.tail else "no output")).strip()

    async def stop(self, grace: float) -> None:
        self.upstream.close()
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        end = time.monotonic() + grace
        while self.proc.poll() is None and time.monotonic() < end:
            await asyncio.sleep(0.05)
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            await asyncio.get_running_loop().run_in_executor(None, self.proc.wait)
        self.socket_path.unlink(missing_ok=True)

    def kill_now(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    # ---------------------------------------------------------------- description
    def pids(self) -> list[int]:
        """Its worker processes (the supervisor's children that serve), for GET /models/{name}."""
        if self.proc is None:
            return []
        try:
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        except OSError:
            return []
        return [int(pid) for pid in children if _comm(int(pid)) not in ("smserve-zygote", "smserve-standin")]


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def rss_bytes(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0
