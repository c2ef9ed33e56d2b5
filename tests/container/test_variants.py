"""images.md §6 items 19 and 24: what the gpu and inf1 rows of the build matrix add to a family image.

Neither variant's real inputs exist on a CI machine (the CUDA torch wheels are gigabytes; the Neuron packages are
not on PyPI), so each test builds the row's real Dockerfile stage over the family cpu image that the suite just
built, with the inputs that are here:
- gpu: `docker build --target gpu` of the family Dockerfile with the cpu build arguments, so every layer below
  the gpu stage comes from the cache and the stage itself is what gets built and inspected;
- inf1: `build_image.py --variant inf1` as an operator runs it, once with `--stub` and once with a Neuron package
  directory holding a small wheel made here, which must be importable in the image.
Every tag a test creates is removed.
"""
from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path

import pytest

from .conftest import FAMILY, REPO, docker, run_in

pytestmark = [pytest.mark.container,
              pytest.mark.skipif(FAMILY != "pytorch", reason="the gpu and inf1 rows are checked on the PyTorch family")]

BUILD_IMAGE = REPO / "scripts" / "build_image.py"


def _build_image_module():
    spec = importlib.util.spec_from_file_location("smserve_build_image", BUILD_IMAGE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _env(image: str) -> dict[str, str]:
    config = json.loads(docker("image", "inspect", image).stdout)[0]["Config"]
    return dict(item.split("=", 1) for item in config["Env"])


def _labels(image: str) -> dict[str, str]:
    return json.loads(docker("image", "inspect", image).stdout)[0]["Config"].get("Labels") or {}


def test_images_19_gpu_stage_sets_nvidia_runtime_variables(image):
    """images §6 item 19: the gpu stage of the family Dockerfile sets NVIDIA_VISIBLE_DEVICES and
    NVIDIA_DRIVER_CAPABILITIES (what the NVIDIA container runtime reads to inject the driver)."""
    build = _build_image_module()
    matrix = build.load_matrix()
    cpu_row = build.find_row(matrix, FAMILY, "cpu")
    gpu_row = build.find_row(matrix, FAMILY, "gpu")
    family = matrix["families"][FAMILY]
    tag = f"smserve-test-gpu-stage:{uuid.uuid4().hex[:10]}"
    with build.build_lock():
        build.prepare_context(cpu_row)
        build.ensure_dockerignore()
        cmd = ["docker", "build", "--network", "host", "--force-rm", "-f", str(REPO / family["dockerfile"]),
               "--target", gpu_row["target"], "-t", tag]
        for key, value in build.build_arguments(matrix, cpu_row, cpu_row["base"]).items():
            cmd += ["--build-arg", f"{key}={value}"]
        result = subprocess.run([*cmd, str(REPO)], capture_output=True, text=True, timeout=900,
                                env={**build.os.environ, "DOCKER_BUILDKIT": "0"})
    try:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        env = _env(tag)
        assert env.get("NVIDIA_VISIBLE_DEVICES") == "all"
        assert set(env.get("NVIDIA_DRIVER_CAPABILITIES", "").split(",")) >= {"compute", "utility"}
        # the cpu image itself does not claim the NVIDIA runtime
        assert "NVIDIA_VISIBLE_DEVICES" not in _env(image)
    finally:
        docker("rmi", "-f", tag, check=False)


def _wheel(directory: Path, name: str, version: str, module_source: str) -> Path:
    """A minimal pure-Python wheel (PEP 427) with a correct RECORD."""
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": module_source,
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: smserve-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    record.append(f"{dist}/RECORD,,")
    wheel = directory / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
        archive.writestr(f"{dist}/RECORD", "\n".join(record) + "\n")
    return wheel


def _build_inf1(*flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BUILD_IMAGE), "--family", FAMILY, "--variant", "inf1", *flags],
                          capture_output=True, text=True, timeout=900)


def test_images_24_inf1_neuron_label_absent_or_present(image, tmp_path):
    """images §6 item 24 (neo.md §9): an inf1 stub carries ai.smserve.neuron=absent; an image built with a Neuron
    package directory carries `present`, and the directory's wheels are importable from the family venv."""
    build = _build_image_module()
    matrix = build.load_matrix()
    tag, moving = build.tags_for(matrix, build.find_row(matrix, FAMILY, "inf1"))
    try:
        refused = _build_inf1()
        assert refused.returncode == 2, refused.stderr
        assert "NEEDS A NEURON PACKAGE DIRECTORY" in refused.stderr and "--stub" in refused.stderr

        stub = _build_inf1("--stub")
        assert stub.returncode == 0, stub.stderr[-3000:]
        labels = _labels(tag)
        assert labels["ai.smserve.neuron"] == "absent"
        assert labels["ai.smserve.variant"] == "inf1"
        assert _env(tag)["SMSERVE_VARIANT"] == "inf1"

        neuron_dir = tmp_path / "neuron"
        neuron_dir.mkdir()
        _wheel(neuron_dir, "smserve_neuron_probe", "1.0", "VALUE = 'neuron packages installed'\n")
        present = _build_inf1("--neuron-dir", str(neuron_dir))
        assert present.returncode == 0, present.stderr[-3000:]
        assert _labels(tag)["ai.smserve.neuron"] == "present"
        result = run_in(tag, "python", "-c", "import smserve_neuron_probe, torch; print(smserve_neuron_probe.VALUE)")
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "neuron packages installed"
    finally:
        docker("rmi", "-f", tag, moving, check=False)
