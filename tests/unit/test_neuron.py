"""inf1 variants (neo.md §9.2, checklist items 38-40 and 42) on the code that decides: the NeuronCore arithmetic
of smserve/config.py, device discovery from fake /dev and sysfs trees, `neuron-ls` through a fake tool on PATH,
and the detection of Neuron-compiled model files (smserve/neuron.py). The same behaviour is checked through real
servers in tests/contract/test_core_inf1.py, tensorflow/tests/test_tensorflow_inf1.py and, for the stub image,
tests/container/test_variants.py."""

from __future__ import annotations

import importlib.util
import json
import os
import time
import zipfile
from pathlib import Path

import pytest

from smserve import neuron
from smserve.config import load_settings, parse_group_sizes
from smserve.errors import ConfigError, NeuronCoreError, StartupError

from ..harness import FAMILY
from ..neuron_models import saved_model_bytes, write_neuron_mxnet_symbol, write_neuron_saved_model

INF1 = {"SMSERVE_VARIANT": "inf1"}
workers_hold_cores = pytest.mark.skipif(FAMILY == "tensorflow",
                                        reason="TensorFlow: the backends hold the NeuronCores (tested below)")
tensorflow_family = pytest.mark.skipif(importlib.util.find_spec("smserve_tensorflow") is None,
                                       reason="needs the TensorFlow family installed (its venv runs this)")


def fake_dev(tmp_path: Path, *names: str) -> Path:
    dev = tmp_path / "dev"
    dev.mkdir(parents=True)
    for name in names:
        (dev / name).touch()
    return dev


def settings(env: dict, tmp_path: Path, *devices: str, family: str = FAMILY):
    return load_settings({**INF1, **env}, family=family, dev_dir=fake_dev(tmp_path, *devices),
                         sysfs_root=tmp_path / "sys")


# ------------------------------------------------------------------ NEURONCORE_GROUP_SIZES

@pytest.mark.parametrize("value, total", [("1", 1), ("4", 4), ("2,2", 4), ("[1,2,1]", 4), ("4x1", 4),
                                          (" 2x2 , 1 ", 5)])
def test_group_sizes_forms(value, total):
    """The Neuron SDK's forms: one size, a list (one group per entry, brackets allowed), AxB (A groups of B)."""
    assert parse_group_sizes("NEURONCORE_GROUP_SIZES", value) == total


@pytest.mark.parametrize("value", ["0", "two", "2x", "x2", "1,,1", "-1", "0x4"])
def test_group_sizes_refused_with_the_accepted_forms(value):
    with pytest.raises(ConfigError) as caught:
        parse_group_sizes("NEURONCORE_GROUP_SIZES", value)
    assert "NEURONCORE_GROUP_SIZES" in str(caught.value) and "AxB" in str(caught.value)


# ------------------------------------------------------------------ defaults (items 38, 39)

@workers_hold_cores
def test_item38_workers_default_to_neuron_core_host_total(tmp_path):
    s = settings({"NEURON_CORE_HOST_TOTAL": "4"}, tmp_path)
    assert (s.workers.value, s.workers.source) == (4, "NEURON_CORE_HOST_TOTAL")
    assert s.neuron.host_cores.value == 4 and s.neuron.demand == 4


def test_item38_workers_default_to_1_without_host_total_even_with_devices(tmp_path):
    """[AWS] NEURON_CORE_HOST_TOTAL unset: one worker, whatever the device count (which still bounds the check)."""
    s = settings({}, tmp_path, "neuron0", "neuron1")
    assert s.workers.value == 1
    assert s.neuron.host_cores.value == 8 and "2 " in s.neuron.host_cores.source


def test_item38_a_worker_variable_wins_over_the_inf1_default(tmp_path):
    s = settings({"NEURON_CORE_HOST_TOTAL": "4", "SAGEMAKER_MODEL_SERVER_WORKERS": "2"}, tmp_path)
    assert (s.workers.value, s.workers.source) == (2, "SAGEMAKER_MODEL_SERVER_WORKERS")


@workers_hold_cores
def test_item39_group_sizes_default_to_1_and_a_user_value_is_kept(tmp_path):
    assert dict(settings({}, tmp_path / "a").neuron.exports) == {"NEURONCORE_GROUP_SIZES": "1"}
    assert dict(settings({"NEURONCORE_GROUP_SIZES": "2"}, tmp_path / "b").neuron.exports) == \
        {"NEURONCORE_GROUP_SIZES": "2"}


def test_the_cpu_variant_has_no_neuron_settings(tmp_path):
    s = load_settings({"NEURON_CORE_HOST_TOTAL": "4", "SAGEMAKER_MODEL_SERVER_WORKERS": "8"}, family=FAMILY)
    assert s.neuron is None and s.workers.value == 8


def test_mms_aliases_are_honoured_on_inf1_where_the_family_reads_ts(tmp_path):
    """neo.md §9.2: AWS's inf1 entrypoint renames MMS_* to TS_*; the cpu variant does not."""
    if FAMILY != "pytorch":
        pytest.skip("the TS_/MMS_ renaming concerns the TorchServe family")
    env = {"MMS_DEFAULT_WORKERS_PER_MODEL": "3", "MMS_MAX_REQUEST_SIZE": "1234"}
    s = settings(env, tmp_path)
    assert (s.workers.value, s.workers.source) == (3, "MMS_DEFAULT_WORKERS_PER_MODEL")
    assert s.max_request_bytes.value == 1234
    cpu = load_settings(env, family=FAMILY)
    assert cpu.workers is None and cpu.max_request_bytes.value != 1234


# ------------------------------------------------------------------ the NeuronCore check (item 40)

@workers_hold_cores
def test_item40_8_workers_on_4_neuroncores_name_both_numbers(tmp_path):
    with pytest.raises(NeuronCoreError) as caught:
        settings({"NEURON_CORE_HOST_TOTAL": "4", "SAGEMAKER_MODEL_SERVER_WORKERS": "8"}, tmp_path)
    text = str(caught.value)
    assert text.startswith("inf1: 8 workers x NeuronCore group size 1"), text
    assert "= 8 NeuronCores, but this instance has 4 (NEURON_CORE_HOST_TOTAL=4" in text, text
    assert "set SAGEMAKER_MODEL_SERVER_WORKERS to at most 4" in text, text
    assert caught.value.exit_status == 2


@workers_hold_cores
def test_item40_default_workers_with_group_size_2_exceed_the_host(tmp_path):
    """Workers defaulted to NEURON_CORE_HOST_TOTAL with groups of 2 claim twice the cores: the fix names the
    variable to set (the user set none)."""
    with pytest.raises(NeuronCoreError) as caught:
        settings({"NEURON_CORE_HOST_TOTAL": "4", "NEURONCORE_GROUP_SIZES": "2"}, tmp_path)
    assert "4 workers x NeuronCore group size 2 (NEURONCORE_GROUP_SIZES=2) = 8 NeuronCores" in str(caught.value)
    assert "set SAGEMAKER_MODEL_SERVER_WORKERS to at most 2" in str(caught.value)


@workers_hold_cores
def test_item40_a_group_larger_than_the_host_asks_to_lower_the_group(tmp_path):
    with pytest.raises(NeuronCoreError) as caught:
        settings({"NEURON_CORE_HOST_TOTAL": "4", "SAGEMAKER_MODEL_SERVER_WORKERS": "1",
                  "NEURONCORE_GROUP_SIZES": "[4,4]"}, tmp_path)
    assert "1 workers x 8 NeuronCores per worker (NEURONCORE_GROUP_SIZES=[4,4])" in str(caught.value)
    assert "lower the NeuronCores per process to at most 4" in str(caught.value)


@workers_hold_cores
def test_item40_the_check_uses_the_device_count_when_the_variable_is_unset(tmp_path):
    """inf1.xlarge: one /dev/neuron0 = 4 NeuronCores; 5 workers do not fit, 4 do."""
    with pytest.raises(NeuronCoreError) as caught:
        settings({"SAGEMAKER_MODEL_SERVER_WORKERS": "5"}, tmp_path / "a", "neuron0")
    assert "= 5 NeuronCores, but this instance has 4 (1 " in str(caught.value)
    assert settings({"SAGEMAKER_MODEL_SERVER_WORKERS": "4"}, tmp_path / "b", "neuron0").workers.value == 4


def test_item40_unknown_core_count_is_not_checked(tmp_path):
    s = settings({"SAGEMAKER_MODEL_SERVER_WORKERS": "64"}, tmp_path)
    assert s.neuron.host_cores is None and s.workers.value == 64


def test_neuron_core_host_total_must_be_a_positive_integer(tmp_path):
    with pytest.raises(ConfigError) as caught:
        settings({"NEURON_CORE_HOST_TOTAL": "four"}, tmp_path)
    assert "NEURON_CORE_HOST_TOTAL" in str(caught.value)


@tensorflow_family
def test_item39_tensorflow_neuron_rt_num_cores_copies_the_group_sizes(tmp_path):
    s = settings({"NEURONCORE_GROUP_SIZES": "2"}, tmp_path / "a", family="tensorflow")
    assert dict(s.neuron.exports) == {"NEURONCORE_GROUP_SIZES": "2", "NEURON_RT_NUM_CORES": "2"}
    s = settings({}, tmp_path / "b", family="tensorflow")
    assert dict(s.neuron.exports) == {"NEURONCORE_GROUP_SIZES": "1", "NEURON_RT_NUM_CORES": "1"}
    s = settings({"NEURONCORE_GROUP_SIZES": "2", "NEURON_RT_NUM_CORES": "1"}, tmp_path / "c", family="tensorflow")
    assert dict(s.neuron.exports)["NEURON_RT_NUM_CORES"] == "1"


@tensorflow_family
def test_item40_tensorflow_counts_backend_instances_times_neuron_rt_num_cores(tmp_path):
    """TF: the backends hold the NeuronCores, not the front workers (4 front workers here are fine)."""
    env = {"NEURON_CORE_HOST_TOTAL": "4", "NEURONCORE_GROUP_SIZES": "2", "SAGEMAKER_TFS_INSTANCE_COUNT": "3"}
    with pytest.raises(NeuronCoreError) as caught:
        settings(env, tmp_path / "a", family="tensorflow")
    text = str(caught.value)
    assert "inf1: 3 TF Serving instances x NEURON_RT_NUM_CORES 2 (from NEURONCORE_GROUP_SIZES=2) = 6 NeuronCores" \
           in text, text
    assert "has 4 (NEURON_CORE_HOST_TOTAL=4" in text and "set SAGEMAKER_TFS_INSTANCE_COUNT to at most 2" in text
    ok = settings({**env, "SAGEMAKER_TFS_INSTANCE_COUNT": "2"}, tmp_path / "b", family="tensorflow")
    assert ok.workers.value == 4 and ok.neuron.demand == 4
    with pytest.raises(NeuronCoreError, match="NEURON_RT_NUM_CORES=0, every NeuronCore"):
        settings({"NEURON_CORE_HOST_TOTAL": "4", "NEURON_RT_NUM_CORES": "0", "SAGEMAKER_TFS_INSTANCE_COUNT": "2"},
                 tmp_path / "c", family="tensorflow")


# ------------------------------------------------------------------ devices, sysfs, neuron-ls

def test_neuron_device_nodes_are_listed_in_numeric_order(tmp_path):
    dev = fake_dev(tmp_path, "neuron10", "neuron2", "neuron0", "neuron_x", "neuronx", "nvidia0")
    assert neuron.neuron_devices(dev) == tuple(str(dev / n) for n in ("neuron0", "neuron2", "neuron10"))
    assert neuron.neuron_devices(tmp_path / "absent") == ()


def test_inferentia_pci_devices_are_counted_by_vendor_and_device(tmp_path):
    root = tmp_path / "sys"
    for address, vendor, device in [("0000:00:1e.0", "0x1d0f", "0x7064"), ("0000:00:1f.0", "0x1d0f", "0x7064\n"),
                                    ("0000:00:05.0", "0x1d0f", "0xec20"),  # an Amazon ENA adapter
                                    ("0000:00:06.0", "0x10de", "0x7064")]:
        folder = root / "bus" / "pci" / "devices" / address
        folder.mkdir(parents=True)
        (folder / "vendor").write_text(vendor + "\n")
        (folder / "device").write_text(device)
    (root / "bus" / "pci" / "devices" / "0000:00:07.0").mkdir()  # unreadable: skipped
    assert neuron.inferentia_pci_devices(root) == ("0000:00:1e.0", "0000:00:1f.0")
    assert neuron.inferentia_pci_devices(tmp_path / "nothing") == ()


@workers_hold_cores
def test_summary_lines_report_devices_and_the_arithmetic(tmp_path):
    s = settings({"NEURON_CORE_HOST_TOTAL": "4", "SAGEMAKER_MODEL_SERVER_WORKERS": "3"}, tmp_path, "neuron0")
    lines = "\n".join(neuron.summary_lines(s.neuron))
    assert "0 Inferentia device(s) on the PCI bus (vendor 1d0f, device 7064)" in lines
    assert f"device nodes: {tmp_path / 'dev' / 'neuron0'}" in lines
    assert "3 workers x 1 = 3 in use; this instance: 4 (NEURON_CORE_HOST_TOTAL=4)" in lines
    assert "NEURONCORE_GROUP_SIZES=1" in lines


def fake_tool(tmp_path: Path, monkeypatch, script: str) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool = bin_dir / "neuron-ls"
    tool.write_text("#!/bin/sh\n" + script)
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")


def test_neuron_ls_output_is_one_compact_json_line(tmp_path, monkeypatch):
    listing = [{"neuron_device": 0, "bdf": "00:1f.0", "nc_count": 4, "memory_size": 8589934592}]
    fake_tool(tmp_path, monkeypatch, f"[ \"$1\" = --json-output ] || exit 3\ncat <<'EOF'\n"
                                     f"{json.dumps(listing, indent=2)}\nEOF\n")
    assert json.loads(neuron.neuron_ls()) == listing
    assert "\n" not in neuron.neuron_ls()


def test_neuron_ls_failures_are_described_and_bounded(tmp_path, monkeypatch):
    fake_tool(tmp_path, monkeypatch, "echo 'no driver' >&2; exit 4\n")
    assert neuron.neuron_ls().endswith("exited with status 4: no driver")
    (tmp_path / "bin" / "neuron-ls").write_text("#!/bin/sh\nexec sleep 30\n")
    started = time.monotonic()
    assert "did not finish within 0.3 s" in neuron.neuron_ls(timeout=0.3)
    assert time.monotonic() - started < 5


def test_neuron_ls_absent_gives_none(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert neuron.neuron_ls() is None


# ------------------------------------------------------------------ Neuron-marked model files (item 42)

def torchscript_like(path: Path, code: str) -> Path:
    """The layout torch.jit.save writes: <name>/data.pkl, <name>/code/__torch__/....py, <name>/version."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("model/data.pkl", b"\x80\x02}q\x00.")
        archive.writestr("model/code/__torch__/model.py", code)
        archive.writestr("model/version", "3\n")
    return path


def test_item42_torchscript_calling_neuron_ops_is_marked_and_plain_torchscript_is_not(tmp_path):
    marked = torchscript_like(tmp_path / "model.pt", "def forward(self, x):\n  _0, = ops.neuron.forward_v2([x], m)\n")
    plain = torchscript_like(tmp_path / "plain.pth", "def forward(self, x):\n  return torch.relu(x)\n")
    (tmp_path / "weights.bin").write_bytes(b"PK\x03\x04 but not a zip")
    (tmp_path / "notes.txt").write_text("uses neuron:: ops")  # not a model file
    found = neuron.neuron_marked_files(tmp_path)
    assert found == [(marked, "TorchScript code model/code/__torch__/model.py calls ops.neuron.")]
    assert plain not in [path for path, _ in found]


def test_item42_mxnet_symbol_and_tensorflow_saved_model_are_marked(tmp_path):
    symbol = write_neuron_mxnet_symbol(tmp_path / "mx")
    (tmp_path / "mx" / "plain-symbol.json").write_text(json.dumps({"nodes": [{"op": "FullyConnected"}]}))
    graph = write_neuron_saved_model(tmp_path / "tf")
    plain = tmp_path / "tf" / "plain" / "1" / "saved_model.pb"
    plain.parent.mkdir(parents=True)
    plain.write_bytes(saved_model_bytes(("Placeholder", "MatMul")))
    assert neuron.neuron_marked_files(tmp_path / "mx") == [(symbol, "MXNet symbol holds _neuron_subgraph_op nodes")]
    assert neuron.neuron_marked_files(tmp_path / "tf") == [(graph, "TensorFlow graph holds NeuronOp nodes")]


def test_item42_a_marker_across_a_read_chunk_boundary_is_found(tmp_path, monkeypatch):
    monkeypatch.setattr(neuron, "CHUNK", 16)
    path = tmp_path / "saved_model.pb"
    for offset in range(16):
        path.write_bytes(b"x" * (40 + offset) + b"NeuronOp" + b"y" * 20)
        assert neuron._contains(path, b"NeuronOp"), offset
    path.write_bytes(b"Neuron" + b"x" * 40 + b"Op")
    assert not neuron._contains(path, b"NeuronOp")


def test_item42_code_directory_hidden_entries_and_links_are_not_scanned(tmp_path):
    write_neuron_mxnet_symbol(tmp_path / "code")
    write_neuron_mxnet_symbol(tmp_path / ".cache")
    outside = write_neuron_mxnet_symbol(tmp_path.parent / f"{tmp_path.name}-outside")
    (tmp_path / "linked-symbol.json").symlink_to(outside)
    assert neuron.neuron_marked_files(tmp_path) == []


def test_item42_missing_device_error_names_the_file_the_device_and_the_fixes(tmp_path):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    symbol = write_neuron_mxnet_symbol(model_dir)
    dev = fake_dev(tmp_path)
    with pytest.raises(StartupError) as caught:
        neuron.check_model_devices(model_dir, neuron.neuron_devices(dev), dev)
    text = str(caught.value)
    assert text.startswith(f"{symbol} is compiled for AWS Inferentia (MXNet symbol holds _neuron_subgraph_op")
    assert f"but {dev / 'neuron0'} is missing" in text
    assert "inf1 instance with the Neuron driver" in text and "compile the model for CPU" in text
    (dev / "neuron0").touch()
    neuron.check_model_devices(model_dir, neuron.neuron_devices(dev), dev)  # a device: nothing to refuse
