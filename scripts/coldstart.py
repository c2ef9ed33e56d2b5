#!/usr/bin/env python3
"""Measure cold start of a family image: `docker run` -> first 200 from GET /ping (README "Images").

    .venv/<family>/bin/python scripts/coldstart.py [--family pytorch|mxnet|tensorflow] [--image REF] [--runs 5]
        [--requirements] [--workers N] [--env K=V ...] [--versus K=V ...] [--json FILE]

The model is the family's default test model (<family>/tests/<family>_models.py: a TorchScript MLP, an MXNet
Module checkpoint, the half_plus_three SavedModel) mounted read-only; --requirements adds code/requirements.txt (one tiny pure-Python package,
installed inside the container at start-up, needs network access). --versus runs a second configuration (the
same image with those variables) alternating with the first, run by run, so that both see the same machine.
Containers run like `make demo`: --network host, --read-only --tmpfs /tmp, --user 1000:1000; each is removed.
"""
from __future__ import annotations

import argparse
import importlib
import json
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


def model_dir(root: Path, family: str, requirements: bool) -> Path:
    sys.path[:0] = [str(REPO / family / "tests"), str(REPO)]  # also makes bench.proc importable
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = root / "model"
        d.mkdir()
        if family == "tensorflow":  # a SavedModel, half_plus_three with its two versions
            importlib.import_module("tf_models").half_plus_three(d)
        else:
            importlib.import_module(f"{family}_models").write_default_model(d)
    if requirements:
        (d / "code").mkdir()
        (d / "code" / "requirements.txt").write_text("tabulate==0.9.0\n")
    for p in [root, d, *d.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    return d


def one_run(image: str, mdir: Path, workers: int | None, env: list[str]) -> float:
    port = free_port()
    name = f"smserve-cold-{uuid.uuid4().hex[:8]}"
    cmd = ["docker", "run", "-d", "--name", name, "--network", "host", "-e", f"SAGEMAKER_BIND_TO_PORT={port}",
           "-v", f"{mdir}:/opt/ml/model:ro", "--read-only", "--tmpfs", "/tmp", "--user", "1000:1000"]
    if workers:
        cmd += ["-e", f"SAGEMAKER_MODEL_SERVER_WORKERS={workers}"]
    if "tensorflow" in image:  # the backends' ports: a free block instead of TF Serving's fixed 9000/8501
        from bench.proc import free_port_block

        low = free_port_block(9)
        cmd += ["-e", f"SAGEMAKER_SAFE_PORT_RANGE={low}-{low + 8}"]
    for assignment in env:
        cmd += ["-e", assignment]
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


def summary(label: str, times: list[float]) -> str:
    return (f"{label}: cold start median {statistics.median(times):.2f}s min {min(times):.2f}s "
            f"max {max(times):.2f}s ({', '.join(f'{t:.2f}' for t in times)})")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--family", default="pytorch", choices=("pytorch", "mxnet", "tensorflow"))
    ap.add_argument("--image")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--requirements", action="store_true")
    ap.add_argument("--workers", type=int)
    ap.add_argument("--env", action="append", default=[], metavar="K=V", help="container variable (repeatable)")
    ap.add_argument("--versus", action="append", default=[], metavar="K=V",
                    help="also run the image with these variables instead, alternating run by run")
    ap.add_argument("--json", metavar="FILE", help="also write the times, per configuration, as JSON")
    a = ap.parse_args()
    image = a.image or subprocess.run([sys.executable, str(REPO / "scripts" / "build_image.py"), "--family",
                                       a.family, "--variant", "cpu", "--print-tag"], capture_output=True,
                                      text=True, check=True).stdout.strip()
    configs = {"as given": a.env, **({"versus " + " ".join(a.versus): a.versus} if a.versus else {})}
    times: dict[str, list[float]] = {label: [] for label in configs}
    root = Path(tempfile.mkdtemp(prefix="smserve-cold-"))
    try:
        mdir = model_dir(root, a.family, a.requirements)
        for _ in range(a.runs):
            for label, env in configs.items():
                times[label].append(one_run(image, mdir, a.workers, env))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    head = f"{image} requirements={a.requirements} workers={a.workers or 'default'}"
    for label, measured in times.items():
        extra = f" {' '.join(a.env)}" if label == "as given" and a.env else ("" if label == "as given" else f" {label}")
        print(summary(head + extra, measured))
    if a.json:
        Path(a.json).write_text(json.dumps({"image": image, "runs": {label: [round(t, 3) for t in measured]
                                                                     for label, measured in times.items()}}))
    return 0

if __name__ == "__main__":
    sys.exit(main())
