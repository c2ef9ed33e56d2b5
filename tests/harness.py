"""Start smserve as a host process or as a container, on a free 127.0.0.1 port, and talk to it over HTTP.

One contract suite runs against both targets: SMSERVE_TEST_TARGET=host (default) runs `python -m smserve serve`
from the test interpreter's environment; SMSERVE_TEST_TARGET=container runs SMSERVE_TEST_IMAGE with the
model directory mounted read-only at /opt/ml/model and --network host.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import requests

TARGET = os.environ.get("SMSERVE_TEST_TARGET", "host")
IMAGE = os.environ.get("SMSERVE_TEST_IMAGE", "")
FAMILY = os.environ.get("SMSERVE_TEST_FAMILY", "pytorch")
CONTAINER_MODEL_DIR = "/opt/ml/model"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def served_path(model_dir: Path, path: Path | None = None) -> Path:
    """Where the server sees `path` (default: the model dir itself): the host path for a host process,
    the same place under the bind mount for a container."""
    model_dir = Path(model_dir).resolve()
    path = model_dir if path is None else Path(path).resolve()
    if TARGET == "container":
        return Path(CONTAINER_MODEL_DIR) / path.relative_to(model_dir)
    return path


class Server:
    """A running (or exited) smserve instance."""

    def __init__(self, model_dir: Path, env: dict[str, str], port: int, args: tuple[str, ...] = (),
                 docker_args: tuple[str, ...] = ()):
        self.model_dir = Path(model_dir)
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.session = requests.Session()
        self._log = tempfile.NamedTemporaryFile(prefix="smserve-test-", suffix=".log", delete=False)
        self.exit_code: int | None = None
        if TARGET == "container":
            self.name = f"smserve-test-{uuid.uuid4().hex[:10]}"
            cmd = ["docker", "run", "-d", "--name", self.name, "--network", "host",
                   "-e", f"SAGEMAKER_BIND_TO_PORT={port}", "-v", f"{self.model_dir}:{CONTAINER_MODEL_DIR}:ro"]
            for key, value in env.items():
                cmd += ["-e", f"{key}={value}"]
            cmd += [*docker_args, IMAGE, "serve", *args]
            subprocess.run(cmd, check=True, capture_output=True)
            self.proc = None
        else:
            full_env = {**os.environ, "SMSERVE_FAMILY": FAMILY, **env}
            full_env.pop("SMSERVE_TEST_TARGET", None)
            self.proc = subprocess.Popen([sys.executable, "-m", "smserve", "serve", "--model-dir", str(self.model_dir),
                                          "--port", str(port), *args], env=full_env, stdout=self._log,
                                         stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def served_model_dir(self) -> Path:
        """The model directory as the server sees it (the bind mount point inside a container)."""
        return served_path(self.model_dir)

    # ---- process
    def poll(self) -> int | None:
        if self.exit_code is not None:
            return self.exit_code
        if self.proc is not None:
            self.exit_code = self.proc.poll()
        else:
            out = subprocess.run(["docker", "inspect", "-f", "{{.State.Running}} {{.State.ExitCode}}", self.name],
                                 capture_output=True, text=True)
            running, _, code = out.stdout.strip().partition(" ")
            if running == "false":
                self.exit_code = int(code)
        return self.exit_code

    def wait_exit(self, timeout: float = 60) -> int:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.poll() is not None:
                return self.exit_code
            time.sleep(0.1)
        raise TimeoutError(f"server did not exit within {timeout} s\n{self.logs()}")

    def wait_failed_start(self, timeout: float = 60) -> tuple[int, str]:
        """For a server that must not start: wait for its exit, checking meanwhile that /ping is never 200.
        Returns (exit status, log)."""
        end = time.monotonic() + timeout
        while self.poll() is None and time.monotonic() < end:
            try:
                assert requests.get(self.url + "/ping", timeout=2).status_code != 200, "/ping turned 200"
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        return self.wait_exit(10), self.logs()

    def signal(self, signum: int = signal.SIGTERM) -> None:
        if self.proc is not None:
            self.proc.send_signal(signum)
        else:
            subprocess.run(["docker", "kill", "-s", signal.Signals(signum).name, self.name], capture_output=True)

    def logs(self) -> str:
        if self.proc is None:
            out = subprocess.run(["docker", "logs", self.name], capture_output=True, text=True)
            return out.stdout + out.stderr
        return Path(self._log.name).read_text(errors="replace")

    def pids(self) -> list[int]:
        """Every process of this server: the supervisor and its descendants (host target)."""
        if self.proc is None:
            out = subprocess.run(["docker", "top", self.name, "-eo", "pid"], capture_output=True, text=True)
            return [int(x) for x in out.stdout.split()[1:] if x.isdigit()]
        out = subprocess.run(["ps", "-o", "pid=", "-g", str(self.proc.pid)], capture_output=True, text=True)
        return [int(x) for x in out.stdout.split()]

    def worker_pids(self) -> list[int]:
        if self.proc is None:
            raise NotImplementedError("worker pids are read on the host target")
        out = subprocess.run(["ps", "-o", "pid=,comm=", "--ppid", str(self.proc.pid)], capture_output=True, text=True)
        rows = [line.split(None, 1) for line in out.stdout.splitlines() if line.strip()]
        return [int(pid) for pid, comm in rows if comm.strip() not in ("smserve-zygote", "smserve-standin")]

    def zygote_pid(self) -> int | None:
        """The process that imports the framework once and forks the workers (smserve/zygote.py), if any."""
        out = subprocess.run(["ps", "-o", "pid=,comm=", "--ppid", str(self.proc.pid)], capture_output=True, text=True)
        rows = [line.split(None, 1) for line in out.stdout.splitlines() if line.strip()]
        return next((int(pid) for pid, comm in rows if comm.strip() == "smserve-zygote"), None)

    def wait_ready(self, timeout: float = 90) -> "Server":
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.poll() is not None:
                raise RuntimeError(f"server exited with {self.exit_code} before ready\n{self.logs()}")
            try:
                if self.session.get(self.url + "/ping", timeout=5).status_code == 200:
                    return self
            except requests.RequestException:  # refused before bind, or slow while a worker imports its framework
                pass
            time.sleep(0.1)
        raise TimeoutError(f"server not ready within {timeout} s\n{self.logs()}")

    def stop(self) -> None:
        if self.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.wait_exit(40)
            except TimeoutError:
                self.signal(signal.SIGKILL)
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        else:
            subprocess.run(["docker", "rm", "-f", self.name], capture_output=True)
        self.session.close()

    # ---- HTTP
    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        kwargs.setdefault("timeout", 30)
        return self.session.request(method, self.url + path, **kwargs)

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str = "/invocations", data=None, content_type: str | None = "application/json",
             accept: str | None = None, headers: dict | None = None, **kwargs) -> requests.Response:
        h = dict(headers or {})
        if content_type is not None:
            h["Content-Type"] = content_type
        if accept is not None:
            h["Accept"] = accept
        return self.request("POST", path, data=data, headers=h, **kwargs)

    def invoke_json(self, payload, accept: str | None = None):
        import json

        response = self.post(data=json.dumps(payload), accept=accept)
        assert response.status_code == 200, response.text
        return response.json()
