"""neo.md §9.2, checklist items 39, 40 and 42 for the TensorFlow family's inf1 variant (`SMSERVE_VARIANT=inf1`):
the backends hold the NeuronCores, each claiming NEURON_RT_NUM_CORES (default: NEURONCORE_GROUP_SIZES), so the
check counts SAGEMAKER_TFS_INSTANCE_COUNT x NEURON_RT_NUM_CORES. Real servers, real HTTP; the hook families'
form is in tests/contract/test_core_inf1.py."""

from __future__ import annotations

import glob
import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.families import require_framework
from tests.harness import FAMILY, TARGET
from tests.neuron_models import write_neuron_saved_model

require_framework("tensorflow")

import tf_models  # noqa: E402  (needs tensorflow)

pytestmark = pytest.mark.skipif(FAMILY != "tensorflow",
                                reason="TensorFlow family suite: set SMSERVE_TEST_FAMILY=tensorflow")
INF1 = {"SMSERVE_VARIANT": "inf1"}

HANDLER = """
import json
import os

import requests


def handler(data, context):
    prediction = requests.post(context.rest_uri, data=data.read().decode()).json()["predictions"]
    front = {name: os.environ.get(name) for name in ("NEURONCORE_GROUP_SIZES", "NEURON_RT_NUM_CORES")}
    return json.dumps({"predictions": prediction, "front": front}), "application/json"
"""


def port_range(size: int = 10) -> str:
    from test_tensorflow_contract import port_range as free_block  # same folder: the suite's own helper

    return free_block(size)


def backend_environments(server) -> list[dict[str, str]]:
    """The environment of every backend process of a host server (children of the supervisor running the built-in
    backend or tensorflow_model_server)."""
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(server.proc.pid)], capture_output=True, text=True)
    found = []
    for pid in out.stdout.split():
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"smserve_tensorflow.backend" in argv or any(a.endswith(b"tensorflow_model_server") for a in argv):
            found.append(dict(item.decode().split("=", 1) for item in environ if b"=" in item))
    return found


def test_item39_tf_neuron_rt_num_cores_copies_neuroncore_group_sizes(serve, tmp_path):
    """item 39 (TF): NEURONCORE_GROUP_SIZES=2 and no NEURON_RT_NUM_CORES: the backend runs with
    NEURON_RT_NUM_CORES=2 (what each tensorflow_model_server_neuron claims), the front sees the same, and the
    half_plus_three stand-in answers through the backend."""
    root = tmp_path / "model"
    tf_models.half_plus_three(root)
    code = root / "code" / "inference.py"
    code.parent.mkdir()
    code.write_text(textwrap.dedent(HANDLER))
    server = serve(root, {**INF1, "NEURONCORE_GROUP_SIZES": "2", "NEURON_CORE_HOST_TOTAL": "4",
                          "SAGEMAKER_MODEL_SERVER_WORKERS": "1", "SAGEMAKER_SAFE_PORT_RANGE": port_range()})
    answer = server.invoke_json({"instances": [1.0, 2.0]})
    assert answer == {"predictions": [3.5, 4.0], "front": {"NEURONCORE_GROUP_SIZES": "2", "NEURON_RT_NUM_CORES": "2"}}
    logs = server.logs()
    assert "neuron variables  NEURONCORE_GROUP_SIZES=2 NEURON_RT_NUM_CORES=2" in logs, logs
    assert "neuroncores       1 TF Serving instances x 2 = 2 in use; this instance: 4 (NEURON_CORE_HOST_TOTAL=4)" \
           in logs, logs
    if TARGET == "host":
        backends = backend_environments(server)
        assert len(backends) == 1, backends
        assert backends[0].get("NEURON_RT_NUM_CORES") == "2" and backends[0].get("NEURONCORE_GROUP_SIZES") == "2"


def test_item40_tf_instances_times_neuron_rt_num_cores_above_the_host_stop(serve, tmp_path):
    """item 40 (TF): 3 backend instances x NEURON_RT_NUM_CORES 2 on a 4-NeuronCore instance: exit 2 before any
    backend starts, one line naming 3, 2, 6 and 4 and the variables to change."""
    root = tmp_path / "model"
    write_neuron_saved_model(root)  # never read: the configuration is refused first
    server = serve(root, {**INF1, "NEURONCORE_GROUP_SIZES": "2", "NEURON_CORE_HOST_TOTAL": "4",
                          "SAGEMAKER_TFS_INSTANCE_COUNT": "3"}, ready=False)
    status, logs = server.wait_failed_start(60)
    assert status == 2, logs
    lines = [line for line in logs.splitlines() if line.startswith("smserve: ")]
    assert len(lines) == 1, logs
    assert "inf1: 3 TF Serving instances x NEURON_RT_NUM_CORES 2 (from NEURONCORE_GROUP_SIZES=2) = 6 NeuronCores, " \
           "but this instance has 4 (NEURON_CORE_HOST_TOTAL=4" in lines[0], lines[0]
    assert "set SAGEMAKER_TFS_INSTANCE_COUNT to at most 2" in lines[0], lines[0]


@pytest.mark.skipif(TARGET == "host" and bool(glob.glob("/dev/neuron*")), reason="this host has Neuron devices")
def test_item42_tf_neuronop_saved_model_without_dev_neuron_fails_naming_the_device(serve, tmp_path):
    """item 42 (TF): a SavedModel whose graph holds NeuronOp nodes and no /dev/neuron*: exit 1 before the backend
    starts, naming saved_model.pb and /dev/neuron0."""
    root = tmp_path / "model"
    graph = write_neuron_saved_model(root)
    for path in [tmp_path, root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    server = serve(root, {**INF1, "SAGEMAKER_SAFE_PORT_RANGE": port_range()}, ready=False)
    status, logs = server.wait_failed_start(60)
    assert status == 1, logs
    served = server.served_model_dir / graph.relative_to(root)
    assert f"{served} is compiled for AWS Inferentia (TensorFlow graph holds NeuronOp nodes)" in logs, logs
    assert "but /dev/neuron0 is missing" in logs and "compile the model for CPU" in logs, logs
    assert "tfs-0" not in logs, logs  # no backend was started

