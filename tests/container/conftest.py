"""Fixtures for the container suite (images.md checklist, core §1.1 entrypoint, server runs in the image).

The session fixture `image` provides a Docker engine (scripts/engine.sh) and builds or reuses the family's cpu
image through scripts/build_image.py (layer cache makes a rebuild take seconds). With CI=true a missing engine
is a failure, never a skip. Every container a test starts is removed (`containers` fixture, `docker_run`).
Servers bind a free port via SAGEMAKER_BIND_TO_PORT with --network host and are reached on 127.0.0.1.

Env: SMSERVE_TEST_IMAGE=<ref> uses that image instead of building; SMSERVE_TEST_SKIP_BUILD=1 reuses the tag
printed by `build_image.py --print-tag` without rebuilding (the Makefile builds just before the tests).
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests

from ..families import family_models

REPO = Path(__file__).resolve().parents[2]
FAMILY = os.environ.get("SMSERVE_TEST_FAMILY", "pytorch")
VARIANT = os.environ.get("SMSERVE_TEST_VARIANT", "cpu")
CI = os.environ.get("CI", "").lower() == "true"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def docker(*args: str, check: bool = True, timeout: float = 300, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check, timeout=timeout,
                          input=input)


def _engine_or_fail() -> None:
    if docker("info", check=False, timeout=30).returncode == 0:
        return
    r = subprocess.run([str(REPO / "scripts" / "engine.sh")], capture_output=True, text=True)
    if r.returncode == 0 and docker("info", check=False, timeout=30).returncode == 0:
        return
    msg = f"no Docker engine and scripts/engine.sh could not provide one:\n{r.stderr[-2000:]}"
    if CI:
        pytest.fail(msg + "\n(CI=true: a missing engine is a failure)", pytrace=False)
    pytest.skip(msg)


def debian_tool(binary: str, package: str) -> str:
    """The path of a client tool the tests drive (docker-registry, docker-compose), installed from Debian when
    missing. With CI=true a tool that cannot be installed is a failure, never a skip."""
    found = shutil.which(binary)
    if found is None:
        done = subprocess.run(["apt-get", "install", "-y", "-q", package], capture_output=True, text=True,
                              timeout=600, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        found = shutil.which(binary)
        if found is None:
            message = f"{binary} is not installed and apt-get could not install {package}:\n{done.stderr[-1500:]}"
            if CI:
                pytest.fail(message, pytrace=False)
            pytest.skip(message)
    return found


@pytest.fixture(scope="session")
def image() -> str:
    _engine_or_fail()
    ref = os.environ.get("SMSERVE_TEST_IMAGE")
    if ref:
        return ref
    tag = subprocess.run([sys.executable, str(REPO / "scripts" / "build_image.py"), "--family", FAMILY,
                          "--variant", VARIANT, "--print-tag"], capture_output=True, text=True, check=True).stdout.strip()
    have = docker("image", "inspect", tag, check=False).returncode == 0
    if os.environ.get("SMSERVE_TEST_SKIP_BUILD") == "1" and have:
        return tag
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "build_image.py"), "--family", FAMILY,
                        "--variant", VARIANT], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail(f"image build failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}", pytrace=False)
    return tag


@pytest.fixture(scope="session")
def inspect(image) -> dict:
    return json.loads(docker("image", "inspect", image).stdout)[0]


@pytest.fixture(scope="session")
def labels(inspect) -> dict:
    return inspect["Config"].get("Labels") or {}


def run_in(image: str, *cmd: str, entrypoint: str | None = None, args: tuple[str, ...] = ("--network", "none"),
           timeout: float = 300) -> subprocess.CompletedProcess:
    """`docker run --rm` a one-shot command in the image (unique name; removed even on timeout)."""
    name = f"smserve-ct-{uuid.uuid4().hex[:10]}"
    full = ["run", "--rm", "--name", name, *args]
    if entrypoint is not None:
        full += ["--entrypoint", entrypoint]
    try:
        return docker(*full, image, *cmd, check=False, timeout=timeout)
    finally:
        docker("rm", "-f", name, check=False)


def sh(image: str, script: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return run_in(image, "sh", "-c", script, timeout=timeout)


class Container:
    """A detached server container on a free 127.0.0.1 port (--network host)."""

    def __init__(self, image: str, model_dir: Path | None, *, env: dict | None = None, run_args: tuple = (),
                 cmd: tuple = ("serve",)):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.name = f"smserve-ct-{uuid.uuid4().hex[:10]}"
        args = ["run", "-d", "--name", self.name, "--network", "host", "-e", f"SAGEMAKER_BIND_TO_PORT={self.port}"]
        if model_dir is not None:
            args += ["-v", f"{model_dir}:/opt/ml/model:ro"]
        for k, v in (env or {}).items():
            args += ["-e", f"{k}={v}"]
        args += [*run_args, image, *cmd]
        self.started = time.monotonic()
        docker(*args)

    def state(self) -> dict:
        return json.loads(docker("inspect", self.name).stdout)[0]["State"]

    def logs(self) -> str:
        r = docker("logs", self.name, check=False)
        return r.stdout + r.stderr

    def wait_ready(self, timeout: float = 120) -> float:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                if requests.get(self.url + "/ping", timeout=2).status_code == 200:
                    return time.monotonic() - self.started
            except requests.RequestException:
                pass
            st = self.state()
            if not st["Running"]:
                raise AssertionError(f"container exited with {st['ExitCode']} before ready:\n{self.logs()[-4000:]}")
            time.sleep(0.1)
        raise AssertionError(f"not ready within {timeout}s:\n{self.logs()[-4000:]}")

    def wait_exit(self, timeout: float = 60) -> int:
        r = docker("wait", self.name, timeout=timeout)
        return int(r.stdout.strip())

    def remove(self) -> None:
        docker("rm", "-f", self.name, check=False)


@pytest.fixture
def containers(image):
    started: list[Container] = []

    def start(model_dir: Path | None, **kw) -> Container:
        c = Container(image, model_dir, **kw)
        started.append(c)
        return c

    yield start
    for c in started:
        c.remove()


def make_model_dir(root: Path, *, inference: str | None = None, requirements: str | None = None) -> Path:
    """The family's default model (tests/families.py: write_default_model), optionally code/inference.py and
    code/requirements.txt. World-readable so that --user 1000:1000 can read it through the read-only bind mount."""
    model_dir = root / "model"
    model_dir.mkdir(parents=True, exist_ok=True)
    family_models().write_default_model(model_dir)
    if inference is not None or requirements is not None:
        (model_dir / "code").mkdir(exist_ok=True)
    if inference is not None:
        (model_dir / "code" / "inference.py").write_text(inference)
    if requirements is not None:
        (model_dir / "code" / "requirements.txt").write_text(requirements)
    for p in [root, model_dir, *model_dir.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    return model_dir


@pytest.fixture
def model_dir(tmp_path) -> Path:
    return make_model_dir(tmp_path)
