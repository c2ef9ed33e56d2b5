"""neo.md §9.2 and checklist items 38-40 and 42: the inf1 variant's entrypoint semantics through real servers
(`SMSERVE_VARIANT=inf1`, as the inf1 images set it) and real HTTP, for the hook families (PyTorch, MXNet); the
TensorFlow family's form is in tensorflow/tests/test_tensorflow_inf1.py, the stub image (item 41) in
tests/container/test_variants.py and the decision code in tests/unit/test_neuron.py.

No Inferentia here: the models are CPU stand-ins (neo.md §9.4), and "Neuron-marked" models carry the marks of a
Neuron compilation (tests/neuron_models.py) without being runnable."""

from __future__ import annotations

import glob
import json
import os
import re
from pathlib import Path

import pytest
import requests

from ..harness import FAMILY, TARGET
from ..models import make_dir, write_code
from ..neuron_models import write_neuron_model
from .core_scripts import default_model, startup_line

INF1 = {"SMSERVE_VARIANT": "inf1"}

ENV_REPORT = '''
import json
import os

NAMES = ("NEURONCORE_GROUP_SIZES", "NEURON_RT_NUM_CORES", "NEURON_CORE_HOST_TOTAL")


def model_fn(model_dir):
    return "inf1-env"


def transform_fn(model, body, content_type, accept):
    return json.dumps({name: os.environ.get(name) for name in NAMES}), "application/json"
'''


def ready_workers(server) -> int:
    """smserve_workers{state="ready"} from a /metrics scrape: the workers that loaded the model."""
    text = requests.get(server.url + "/metrics", timeout=10).text
    match = re.search(r'^smserve_workers\{state="ready"\} (\S+)$', text, re.MULTILINE)
    return int(float(match.group(1))) if match else 0


def test_item38_inf1_workers_default_to_neuron_core_host_total(serve, tmp_path):
    """item 38: NEURON_CORE_HOST_TOTAL=4 and no worker variable: 4 workers start, and the CPU stand-in model of
    the family's default model_fn answers what the framework computes."""
    model_dir = make_dir(tmp_path)
    model = default_model(model_dir)
    server = serve(model_dir, {**INF1, "NEURON_CORE_HOST_TOTAL": "4"})
    model.check(server.invoke_json(model.payload))
    assert ready_workers(server) == 4
    logs = server.logs()
    assert f"family            {FAMILY} (inf1)" in logs, logs
    assert "workers           4 (NEURON_CORE_HOST_TOTAL=4)" in logs, logs
    assert "neuroncores       4 workers x 1 = 4 in use; this instance: 4 (NEURON_CORE_HOST_TOTAL=4)" in logs, logs


def test_item39_inf1_group_sizes_default_to_1_in_the_workers(serve, tmp_path):
    """item 39: the workers (and what they start) see NEURONCORE_GROUP_SIZES=1 when the user set nothing; without
    NEURON_CORE_HOST_TOTAL one worker starts [AWS]; NEURON_RT_NUM_CORES is the TensorFlow family's.
    neo.md §9.2: the startup log gives the number of Inferentia devices on the PCI bus (vendor 1d0f, device
    7064) and, on the host target where a fake tool can be put on PATH, `neuron-ls --json-output`."""
    model_dir = make_dir(tmp_path)
    write_code(model_dir, ENV_REPORT)
    env = dict(INF1)
    listing = [{"neuron_device": 0, "bdf": "00:1f.0", "nc_count": 4}]
    if TARGET == "host":
        tool_dir = tmp_path / "bin"
        tool_dir.mkdir()
        tool = tool_dir / "neuron-ls"
        tool.write_text(f"#!/bin/sh\n[ \"$1\" = --json-output ] || exit 3\necho '{json.dumps(listing)}'\n")
        tool.chmod(0o755)
        env["PATH"] = f"{tool_dir}{os.pathsep}{os.environ['PATH']}"
    server = serve(model_dir, env)
    assert server.invoke_json({}) == {"NEURONCORE_GROUP_SIZES": "1", "NEURON_RT_NUM_CORES": None,
                                      "NEURON_CORE_HOST_TOTAL": None}
    assert ready_workers(server) == 1
    logs = server.logs()
    assert "neuron variables  NEURONCORE_GROUP_SIZES=1" in logs, logs
    if TARGET == "host":
        assert f"inferentia        {inferentia_here()} Inferentia device(s) on the PCI bus (vendor 1d0f, " \
               f"device 7064)" in logs, logs
        assert f"neuron-ls --json-output: {json.dumps(listing, separators=(',', ':'))}" in logs, logs
    else:  # a container without the device passed in sees the PCI bus but never lists the tool's output here
        assert "Inferentia device(s) on the PCI bus (vendor 1d0f, device 7064)" in logs, logs


def inferentia_here() -> int:
    """Inferentia chips on this machine's PCI bus, counted independently of smserve."""
    count = 0
    for device in glob.glob("/sys/bus/pci/devices/*"):
        try:
            ids = (Path(device, "vendor").read_text().strip(), Path(device, "device").read_text().strip())
        except OSError:
            continue
        count += ids == ("0x1d0f", "0x7064")
    return count


def test_item39_a_group_size_the_user_sets_reaches_the_workers_unchanged(serve, tmp_path):
    model_dir = make_dir(tmp_path)
    write_code(model_dir, ENV_REPORT)
    server = serve(model_dir, {**INF1, "NEURONCORE_GROUP_SIZES": "2", "NEURON_CORE_HOST_TOTAL": "4",
                               "SAGEMAKER_MODEL_SERVER_WORKERS": "2"})
    assert server.invoke_json({})["NEURONCORE_GROUP_SIZES"] == "2"
    assert "neuroncores       2 workers x 2 = 4 in use" in server.logs()


def test_item40_inf1_8_workers_on_a_4_core_instance_stop_naming_8_and_4(serve, tmp_path):
    """item 40: 8 workers x group 1 on a 4-NeuronCore instance: exit 2 before serving, one line naming both
    numbers, where they came from and what to change."""
    line = startup_line(serve, tmp_path, {**INF1, "NEURON_CORE_HOST_TOTAL": "4", "SAGEMAKER_MODEL_SERVER_WORKERS": "8"})
    assert "inf1: 8 workers x NeuronCore group size 1" in line, line
    assert "= 8 NeuronCores, but this instance has 4 (NEURON_CORE_HOST_TOTAL=4" in line, line
    assert "set SAGEMAKER_MODEL_SERVER_WORKERS to at most 4" in line, line


def test_item40_the_cpu_variant_does_not_count_neuroncores(serve, tmp_path):
    """The same variables on the cpu variant: nothing to check, the 2 workers asked for serve."""
    model_dir = make_dir(tmp_path)
    write_code(model_dir, ENV_REPORT)
    server = serve(model_dir, {"SMSERVE_VARIANT": "cpu", "NEURON_CORE_HOST_TOTAL": "1",
                               "SAGEMAKER_MODEL_SERVER_WORKERS": "2"})
    assert server.invoke_json({})["NEURONCORE_GROUP_SIZES"] is None
    assert ready_workers(server) == 2


@pytest.mark.skipif(TARGET == "host" and bool(glob.glob("/dev/neuron*")), reason="this host has Neuron devices")
def test_item42_inf1_neuron_model_without_dev_neuron_fails_naming_the_device(serve, tmp_path):
    """item 42: a Neuron-compiled model of the family (TorchScript calling neuron:: operators, an MXNet symbol with
    _neuron_subgraph_op) and no /dev/neuron*: exit 1 at startup with the file, the missing device and the fixes,
    before any worker tries to load it (which would fail with an unknown-operator error)."""
    model_dir = make_dir(tmp_path)
    marked = write_neuron_model(model_dir)
    for path in [model_dir, *model_dir.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    server = serve(model_dir, {**INF1, "SAGEMAKER_MODEL_SERVER_WORKERS": "1"}, ready=False)
    status, logs = server.wait_failed_start(60)
    assert status == 1, logs
    served = server.served_model_dir / marked.relative_to(model_dir)
    assert f"{served} is compiled for AWS Inferentia" in logs, logs
    assert "but /dev/neuron0 is missing" in logs, logs
    assert "Run it on an inf1 instance with the Neuron driver" in logs and "compile the model for CPU" in logs, logs
    assert "worker 0 ready" not in logs and "Unknown builtin op" not in logs, logs
