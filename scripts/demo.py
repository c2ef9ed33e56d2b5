#!/usr/bin/env python3
"""`make demo`: the PyTorch cpu image serving an example model, end to end, with timings.

1. provides the Docker engine (scripts/engine.sh) and the base image (scripts/bootstrap-base.sh);
2. builds (or reuses from the layer cache) smserve-pytorch cpu via scripts/build_image.py;
3. creates an example model.tar.gz from pytorch/example: a TorchScript MLP (model.pt), code/inference.py and
   code/requirements.txt (one tiny pure-Python package installed inside the container at start-up);
4. extracts it and runs the container the way SageMaker does, hardened:
   docker run -d --network host -e SAGEMAKER_BIND_TO_PORT=<free port> -v <dir>:/opt/ml/model:ro
              --read-only --tmpfs /tmp --user 1000:1000 IMAGE serve
5. waits for GET /ping 200 (cold start), invokes with JSON and NPY, prints answers and timings;
6. removes the container (always).

Run with the .venv/pytorch interpreter (it needs torch to write the example model).
"""
from __future__ import annotations

import io
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "pytorch" / "example"
REQUIREMENT = (EXAMPLE / "code" / "requirements.txt").read_text().strip()


def say(msg: str) -> None:
    print(f"[demo] {msg}", flush=True)


def sh(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, **kw)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method: str, url: str, body: bytes | None = None, headers: dict | None = None, timeout: float = 30):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def make_model_archive(work: Path) -> Path:
    """pytorch/example built into a folder, packed the way SageMaker expects (model at the root, code/)."""
    src = work / "src"
    sh([sys.executable, str(EXAMPLE / "build_model.py"), str(src)], check=True, capture_output=True)
    archive = work / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for p in sorted(src.rglob("*")):
            tar.add(p, arcname=str(p.relative_to(src)), recursive=False)
    return archive


def main() -> int:
    t_all = time.monotonic()
    if sh([str(REPO / "scripts" / "engine.sh")]).returncode != 0:
        return 1
    t0 = time.monotonic()
    if sh([str(REPO / "scripts" / "bootstrap-base.sh")]).returncode != 0:
        return 1
    t_base = time.monotonic() - t0

    tag = sh([sys.executable, str(REPO / "scripts" / "build_image.py"), "--family", "pytorch", "--variant", "cpu",
              "--print-tag"], capture_output=True, text=True, check=True).stdout.strip()
    say(f"building (or reusing) {tag} ...")
    t0 = time.monotonic()
    r = sh([sys.executable, str(REPO / "scripts" / "build_image.py"), "--family", "pytorch", "--variant", "cpu"],
           capture_output=True, text=True)
    t_build = time.monotonic() - t0
    if r.returncode != 0:
        print(r.stdout[-4000:], r.stderr[-4000:], sep="\n")
        say("image build failed")
        return 1
    size = int(sh(["docker", "image", "inspect", "-f", "{{.Size}}", tag], capture_output=True, text=True,
                  check=True).stdout)
    say(f"image {tag}: {size / 1e6:.0f} MB, build step {t_build:.1f}s (base step {t_base:.1f}s)")

    work = Path(tempfile.mkdtemp(prefix="smserve-demo-"))
    name = f"smserve-demo-{uuid.uuid4().hex[:8]}"
    try:
        archive = make_model_archive(work)
        say(f"example model archive: {archive} ({archive.stat().st_size} bytes): "
            + ", ".join(tarfile.open(archive).getnames()))
        model_dir = work / "model"
        model_dir.mkdir()
        with tarfile.open(archive) as tar:
            tar.extractall(model_dir, filter="data")
        for p in [work, model_dir, *model_dir.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)

        port = free_port()
        cmd = ["docker", "run", "-d", "--name", name, "--network", "host",
               "-e", f"SAGEMAKER_BIND_TO_PORT={port}", "-v", f"{model_dir}:/opt/ml/model:ro",
               "--read-only", "--tmpfs", "/tmp", "--user", "1000:1000", tag, "serve"]
        say("$ " + " ".join(cmd))
        t0 = time.monotonic()
        sh(cmd, check=True, capture_output=True)
        base = f"http://127.0.0.1:{port}"
        cold = None
        while time.monotonic() - t0 < 180:
            try:
                status, _, _ = http("GET", base + "/ping", timeout=2)
                if status == 200:
                    cold = time.monotonic() - t0
                    break
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            running = sh(["docker", "inspect", "-f", "{{.State.Running}}", name], capture_output=True,
                         text=True).stdout.strip()
            if running != "true":
                break
            time.sleep(0.05)
        if cold is None:
            print(sh(["docker", "logs", name], capture_output=True, text=True).stderr[-4000:])
            say("the container did not become healthy")
            return 1
        say(f"cold start (docker run -> first 200 /ping, includes installing {REQUIREMENT}): {cold:.2f}s")

        x = [[0.5, -1.0, 2.0, 0.25], [1.0, 1.0, 1.0, 1.0]]
        status, hdrs, body = http("POST", base + "/invocations", json.dumps(x).encode(),
                                  {"Content-Type": "application/json", "Accept": "application/json"})
        say(f"JSON  -> {status} {hdrs.get('content-type')}")
        if status != 200:
            print(body.decode(errors="replace"))
            return 1
        answer = json.loads(body)
        print(answer["table"])

        import numpy as np

        buf = io.BytesIO()
        np.save(buf, np.asarray(x, dtype=np.float32))
        status, hdrs, body = http("POST", base + "/invocations", buf.getvalue(),
                                  {"Content-Type": "application/x-npy", "Accept": "application/x-npy"})
        say(f"NPY   -> {status} {hdrs.get('content-type')}")
        if status != 200:
            print(body.decode(errors="replace"))
            return 1
        arr = np.load(io.BytesIO(body), allow_pickle=False)
        print(f"        dtype={arr.dtype} shape={arr.shape}\n{arr}")

        lat = []
        payload = json.dumps(x).encode()
        for _ in range(50):
            s = time.perf_counter()
            http("POST", base + "/invocations", payload, {"Content-Type": "application/json"})
            lat.append((time.perf_counter() - s) * 1000)
        say(f"invoke latency over {len(lat)} sequential JSON requests: p50 {statistics.median(lat):.2f} ms, "
            f"p90 {sorted(lat)[int(len(lat) * 0.9) - 1]:.2f} ms")
        say(f"summary: image {size / 1e6:.0f} MB | build {t_build:.1f}s | cold start {cold:.2f}s | "
            f"invoke p50 {statistics.median(lat):.2f} ms | total {time.monotonic() - t_all:.1f}s")
        return 0
    finally:
        sh(["docker", "rm", "-f", name], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
        say(f"container {name} removed")


if __name__ == "__main__":
    sys.exit(main())
