"""images.md §6 items 19 and 24: what the gpu and inf1 rows of the build matrix add to a family image.

Neither variant's real inputs exist on a CI machine (the CUDA torch wheels are gigabytes; the Neuron packages are
not on PyPI), so each test builds the row's real Dockerfile stage over the family cpu image that the suite just
built, with the inputs that are here:
- gpu: `docker build --target gpu` of the family Dockerfile with the cpu build arguments, so every layer below
  the gpu stage comes from the cache and the stage itself is what gets built and inspected;
- inf1: `build_image.py --variant inf1` as an operator runs it, once with `--stub` and once with a Neuron package
  directory holding a small wheel made here, which must be importable in the image.
- inf1 stub serving (neo.md §10 items 38-42 in the image): the stub serves a CPU TorchScript stand-in with the
  inf1 defaults, refuses more workers than NeuronCores and a Neuron-compiled TorchScript without /dev/neuron*.
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

import numpy as np
import pytest
import requests

from ..families import family_models
from ..neuron_models import write_neuron_torchscript
from .conftest import FAMILY, REPO, Container, docker, make_model_dir, run_in

pytestmark = pytest.mark.container
# the gpu row and the operator's inf1 builds are checked on the PyTorch family; every framework family builds and
# checks its inf1 stub (neo.md §9.3), the hook families also serve their default model from it
pytorch_only = pytest.mark.skipif(FAMILY != "pytorch", reason="checked on the PyTorch family's rows")
inf1_family = pytest.mark.skipif(FAMILY not in ("pytorch", "mxnet", "tensorflow"),
                                 reason="inf1 variants belong to the framework families")
serves_default_model = pytest.mark.skipif(FAMILY not in ("pytorch", "mxnet"),
                                          reason="the shared default model exists for the hook families")

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


@pytorch_only
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


@pytorch_only
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


# ------------------------------------------------------------------ the inf1 stub serving (neo.md §9.2-§9.4)

@pytest.fixture(scope="module")
def inf1_stub(image):
    """The inf1 stub as `build_image.py --variant inf1 --stub` builds it, kept under a tag of its own (the image
    24 test rebuilds the row's tags with a Neuron directory and removes them)."""
    build = _build_image_module()
    matrix = build.load_matrix()
    tag, moving = build.tags_for(matrix, build.find_row(matrix, FAMILY, "inf1"))
    own = f"smserve-test-inf1-stub:{uuid.uuid4().hex[:10]}"
    try:
        stub = _build_inf1("--stub")
        assert stub.returncode == 0, stub.stderr[-3000:]
        docker("tag", tag, own)
    finally:
        docker("rmi", "-f", tag, moving, check=False)
    yield own
    docker("rmi", "-f", own, check=False)


@pytest.fixture
def stub_containers(inf1_stub):
    started: list[Container] = []

    def start(model_dir: Path, env: dict) -> Container:
        started.append(Container(inf1_stub, model_dir, env=env))
        return started[-1]

    yield start
    for container in started:
        container.remove()


@inf1_family
def test_item41_every_framework_family_builds_its_inf1_stub(inf1_stub):
    """images.md §1, neo.md §9.3: the family's inf1 row builds in `make test` as a stub (no Neuron packages here)
    FROM its cpu image: labelled absent, variant inf1, and its settings apply the inf1 defaults of §9.2."""
    labels = _labels(inf1_stub)
    assert labels["ai.smserve.neuron"] == "absent" and labels["ai.smserve.variant"] == "inf1"
    assert labels["ai.smserve.family"] == FAMILY
    assert _env(inf1_stub).get("SMSERVE_VARIANT") == "inf1"
    probe = run_in(inf1_stub, "python", "-c",
                   "from smserve.config import load_settings; s = load_settings({'SMSERVE_VARIANT': 'inf1', "
                   "'NEURON_CORE_HOST_TOTAL': '4', 'SMSERVE_FAMILY': '%s'}); "
                   "print(s.variant, s.workers.value, s.workers.source)" % FAMILY)
    assert probe.returncode == 0, probe.stderr[-3000:]
    assert probe.stdout.split()[:2] == ["inf1", "4"], probe.stdout


@serves_default_model
def test_item41_inf1_stub_is_labelled_absent_and_serves_a_cpu_torchscript_stand_in(inf1_stub, stub_containers,
                                                                                  tmp_path):
    """item 41 (with items 38, 39 through the image's entrypoint): the stub carries ai.smserve.neuron=absent, holds
    no Neuron framework, and serves the family's plain TorchScript model with NEURON_CORE_HOST_TOTAL=2 workers
    and NEURONCORE_GROUP_SIZES=1; answers equal what torch computes here."""
    labels = _labels(inf1_stub)
    assert labels["ai.smserve.neuron"] == "absent" and labels["ai.smserve.variant"] == "inf1"
    probe = run_in(inf1_stub, "python", "-c", "import importlib.util as u; print(u.find_spec('torch_neuron'))")
    assert probe.returncode == 0 and probe.stdout.strip() == "None", probe.stdout + probe.stderr
    model_dir = make_model_dir(tmp_path)
    container = stub_containers(model_dir, {"NEURON_CORE_HOST_TOTAL": "2"})
    container.wait_ready()
    rows = [[1.0, 2.0, 3.0, 4.0]]
    answer = requests.post(container.url + "/invocations", json=rows, timeout=30)
    assert answer.status_code == 200, answer.text
    np.testing.assert_allclose(np.array(answer.json()), np.asarray(family_models().predict_default(model_dir, rows)),
                               rtol=1e-5)
    logs = container.logs()
    assert f"family            {FAMILY} (inf1)" in logs, logs
    assert "workers           2 (NEURON_CORE_HOST_TOTAL=2)" in logs, logs
    assert "Inferentia device(s) on the PCI bus (vendor 1d0f, device 7064); device nodes: none" in logs, logs
    assert "neuron variables  NEURONCORE_GROUP_SIZES=1" in logs, logs


@serves_default_model
def test_item40_inf1_stub_refuses_8_workers_on_4_neuroncores(stub_containers, tmp_path):
    container = stub_containers(make_model_dir(tmp_path), {"NEURON_CORE_HOST_TOTAL": "4",
                                                           "SAGEMAKER_MODEL_SERVER_WORKERS": "8"})
    assert container.wait_exit(60) == 2
    logs = container.logs()
    assert "inf1: 8 workers x NeuronCore group size 1" in logs, logs
    assert "= 8 NeuronCores, but this instance has 4 (NEURON_CORE_HOST_TOTAL=4" in logs, logs


@pytorch_only
def test_item42_inf1_stub_refuses_a_neuron_torchscript_without_dev_neuron(stub_containers, tmp_path):
    """item 42: a TorchScript calling neuron:: operators (tests/neuron_models.py) in a container without
    /dev/neuron*: exit 1 naming the file and /dev/neuron0, before a worker meets the unknown operator."""
    model_dir = tmp_path / "model"
    write_neuron_torchscript(model_dir / "model.pt")
    for path in [tmp_path, model_dir, *model_dir.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    container = stub_containers(model_dir, {"SAGEMAKER_MODEL_SERVER_WORKERS": "1"})
    assert container.wait_exit(60) == 1
    logs = container.logs()
    assert "/opt/ml/model/model.pt is compiled for AWS Inferentia (TorchScript code" in logs, logs
    assert "but /dev/neuron0 is missing" in logs and "compile the model for CPU" in logs, logs
    assert "Unknown builtin op" not in logs, logs
