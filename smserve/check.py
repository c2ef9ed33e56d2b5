"""`smserve check`: what can be known about a model archive before deploying it, without an endpoint.

Layout diagnostics (spec core §5.4) come from the same code the server runs at startup. The user module is
imported, and its hooks bound with the family's context rule, in a separate process of the family's environment
(this one, or the image with --image), after code/requirements.txt is installed there the way the server
installs it; so "resolvable requirements", "importable module" and "hook signatures" are checked the way the
endpoint will meet them. With --invoke, one real prediction is made by a real server.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from . import layout as layout_mod
from .archive import ArchiveError, extract
from .errors import StartupError
from .families.base import Family

CONTAINER_MODEL_DIR = "/opt/ml/model"
ERROR, WARNING, OK = "ERROR", "WARNING", "OK"


@dataclass(frozen=True)
class Finding:
    level: str
    text: str

    def line(self) -> str:
        return f"{self.level:<7} {self.text}"


def prepare(source: Path, workdir: Path) -> Path:
    """The model folder to check: `source` itself, or where its archive is extracted."""
    if source.is_dir():
        return source
    if not source.is_file():
        raise ArchiveError(f"{source} does not exist; pass a model.tar.gz or a model folder")
    target = workdir / "model"
    target.mkdir()
    extract(source, target)
    if not any(target.iterdir()):
        raise ArchiveError(f"{source} is empty; it must hold the model files and code/inference.py")
    return target


def check_layout(model_dir: Path, family: Family, program: str) -> tuple[list[Finding], layout_mod.Layout | None]:
    try:
        found = layout_mod.resolve(model_dir, program, False, None, family.descend_single_directory)
    except StartupError as exc:
        return [Finding(ERROR, str(exc))], None
    findings = [Finding(WARNING, text) for text in found.warnings]
    try:
        layout_mod.check_static(found, family.expected_files)
    except StartupError as exc:
        findings.append(Finding(ERROR, str(exc)))
    if found.module is None:
        findings.append(Finding(OK, f"no user module ({program}) in code/: the {family.display_name} defaults "
                                    f"serve the model"))
    return findings, found


def _probe_command(model_dir: Path, family: Family, program: str, image: str | None) -> list[str]:
    args = ["-m", "smserve.probe", "--family", family.name, "--program", program]
    if image is None:
        return [sys.executable, *args, str(model_dir)]
    return ["docker", "run", "--rm", "--network", "host", "--read-only", "--tmpfs", "/tmp:exec",
            "-v", f"{model_dir.resolve()}:{CONTAINER_MODEL_DIR}:ro", "--entrypoint", "python", image,
            *args, CONTAINER_MODEL_DIR]


def check_module(model_dir: Path, family: Family, program: str, image: str | None,
                 timeout: float) -> list[Finding]:
    """Install requirements, import the module, bind the hooks: in a fresh process of the family environment."""
    command = _probe_command(model_dir, family, program, image)
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return [Finding(ERROR, f"importing the user module did not finish within {timeout:g} s")]
    except FileNotFoundError as exc:
        return [Finding(ERROR, f"cannot run {command[0]} ({exc}); install Docker or leave out --image")]
    try:
        report = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        where = f"image {image}" if image else "this environment"
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        return [Finding(ERROR, f"the check could not run in {where} (exit status {done.returncode}): "
                               + " | ".join(tail))]
    return [Finding(level, text) for level, text in report["findings"]]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def invoke(model_dir: Path, family: Family, image: str | None, body: bytes, content_type: str, accept: str | None,
           timeout: float) -> list[Finding]:
    """Serve the model with a real server (this environment, or the image as `smserve local` runs it) and make
    one prediction."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    if image is not None:
        from .local import LocalError, start

        try:
            endpoint = start(model_dir, image, family.name, "ml.m5.large", port,
                             {"SAGEMAKER_MODEL_SERVER_WORKERS": "1"}, timeout)
        except LocalError as exc:
            return [Finding(ERROR, str(exc))]
        stop = endpoint.stop
    else:
        log = tempfile.TemporaryFile()
        process = subprocess.Popen([sys.executable, "-m", "smserve", "serve", "--model-dir", str(model_dir),
                                    "--host", "127.0.0.1", "--family", family.name],
                                   env={**os.environ, "SAGEMAKER_BIND_TO_PORT": str(port),
                                        "SAGEMAKER_MODEL_SERVER_WORKERS": "1"},
                                   stdout=log, stderr=subprocess.STDOUT)

        def stop() -> None:
            process.terminate()
            process.wait(30)
            log.close()
    try:
        if image is None and not _wait_ready(url, lambda: process.poll() is None, timeout):
            return [Finding(ERROR, "the server stopped, or was not ready within the timeout; serve the model with "
                                   "`smserve serve --model-dir` to see its log")]
        headers = {"Content-Type": content_type, **({"Accept": accept} if accept else {})}
        request = urllib.request.Request(url + "/invocations", data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                status, answer_type, payload = answer.status, answer.headers.get("Content-Type"), answer.read()
        except urllib.error.HTTPError as exc:
            status, answer_type, payload = exc.code, exc.headers.get("Content-Type"), exc.read()
        excerpt = payload[:300].decode("utf-8", "replace") + (" …" if len(payload) > 300 else "")
        level = OK if 200 <= status < 300 else ERROR
        return [Finding(level, f"POST /invocations ({content_type}, {len(body)} bytes) -> {status} {answer_type}, "
                               f"{len(payload)} bytes: {excerpt}")]
    finally:
        stop()


def _wait_ready(url: str, running, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while running() and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/ping", timeout=2) as ping:
                if ping.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    return False


def run_check(source: Path, family: Family, program: str = "inference.py", image: str | None = None,
              invoke_file: Path | None = None, content_type: str | None = None, accept: str | None = None,
              timeout: float = 300) -> list[Finding]:
    workdir = Path(tempfile.mkdtemp(prefix="smserve-check-"))
    try:
        try:
            model_dir = prepare(source, workdir)
        except ArchiveError as exc:
            return [Finding(ERROR, str(exc))]
        findings, found = check_layout(model_dir, family, program)
        if found is None:
            return findings
        if found.module is not None or found.requirements is not None:
            findings += check_module(found.model_dir, family, program, image, timeout)
        if invoke_file is not None and not any(f.level == ERROR for f in findings):
            findings += invoke(found.model_dir, family, image, invoke_file.read_bytes(), content_type or "", accept,
                               timeout)
        if model_dir != source:  # name files inside an archive as "model.tar.gz:code/inference.py"
            findings = [Finding(f.level, f.text.replace(f"{model_dir}/", f"{source.name}:")
                                .replace(f"{CONTAINER_MODEL_DIR}/", f"{source.name}:")) for f in findings]
        return findings
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
