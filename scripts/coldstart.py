#!/usr/bin/env python3
"""Measure cold start of an image: `docker run` -> first 200 from GET /ping (README "Images").

    .venv/pytorch/bin/python scripts/coldstart.py [--image REF] [--runs 5] [--requirements] [--workers N]

The model is a TorchScript MLP (model.pt) mounted read-only; --requirements adds code/requirements.txt
(one tiny pure-Python package, installed inside the container at start-up, needs network access).
Containers run like `make demo`: --network host, --read-only --tmpfs /tmp, --user 1000:1000; each is removed.
"""
from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def model_dir(root: Path, requirements: bool) -> Path:
    import torch

    d = root / "model"
    d.mkdir()
    net = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2)).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(net).save(str(d / "model.pt"))
    if requirements:
        (d / "code").mkdir()
        (d / "code" / "requirements.txt").write_text("tabulate==0.9.0\n")
    for p in [root, d, *d.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    return d


def one_run(image: str, mdir: Path, workers: int | None) -> float:
    port = free_port()
    name = f"smserve-cold-{uuid.uuid4().hex[:8]}"
    cmd = ["docker", "run", "-d", "--name", name, "--network", "host", "-e", f"SAGEMAKER_BIND_TO_PORT={port}",
           "-v", f"{mdir}:/opt/ml/model:ro", "--read-only", "--tmpfs", "/tmp", "--user", "1000:1000"]
    if workers:
        cmd += ["-e", f"SAGEMAKER_MODEL_SERVER_WORKERS={workers}"]
    try:
        t0 = time.monotonic()
        subprocess.run(cmd + [image, "serve"], check=True, capture_output=True)
        while time.monotonic() - t0 < 180:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as r:
                    if r.status == 200:
                        return time.monotonic() - t0
            except OSError:
                pass
            time.sleep(0.02)
        raise SystemExit("not ready within 180 s")
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--image")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--requirements", action="store_true")
    ap.add_argument("--workers", type=int)
    a = ap.parse_args()
    image = a.image or subprocess.run([sys.executable, str(REPO / "scripts" / "build_image.py"), "--family",
                                       "pytorch", "--variant", "cpu", "--print-tag"], capture_output=True,
                                      text=True, check=True).stdout.strip()
    root = Path(tempfile.mkdtemp(prefix="smserve-cold-"))
    try:
        mdir = model_dir(root, a.requirements)
        times = [one_run(image, mdir, a.workers) for _ in range(a.runs)]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"{image} requirements={a.requirements} workers={a.workers or 'default'}: cold start "
          f"median {statistics.median(times):.2f}s min {min(times):.2f}s max {max(times):.2f}s "
          f"({', '.join(f'{t:.2f}' for t in times)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
