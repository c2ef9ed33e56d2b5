"""The generated Neo test models (neo_models.py) against the real DLR runtime of this venv (dlr 1.6.0 with its
libdlr.so, treelite 0.93 for recipe A), and what DLR 1.6.0 actually does with each bad artifact (neo.md §7, §8,
checklist 27–33). Loads that can crash, hang or load a second library run in a subprocess.

Run in the neo venv: SMSERVE_TEST_FAMILY=neo .venv/neo/bin/python -m pytest neo/tests/test_neo_models.py
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from tests.families import framework_installed
from tests.harness import FAMILY

if not framework_installed("dlr"):
    pytest.skip("dlr is not installed in this environment", allow_module_level=True)

import neo_models as nm  # noqa: E402  (neo/tests is on sys.path under pytest; imports no dlr)

pytestmark = pytest.mark.skipif(FAMILY != "neo", reason="Neo family suite: set SMSERVE_TEST_FAMILY=neo")

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
GENERATORS = {
    "trees": nm.treelite_trees,
    "classifier": nm.tvm_classifier,
    "nometa": lambda parent: nm.tvm_classifier(parent, "nometa", with_meta=False),
    "gpu": lambda parent: nm.tvm_classifier(parent, "gpu", target="gpu"),
    "image": nm.tvm_image_model,
    "grey": lambda parent: nm.tvm_image_model(parent, "grey", channels=1, height=28, width=20),
    "two_params": nm.two_params,
    "treelite3": nm.treelite3_abi,
    "tl2cgen": nm.tl2cgen_abi,
    "broken_libdlr": nm.broken_libdlr,
    "own_libdlr": nm.own_libdlr,
}
BUILD_SECONDS: dict[str, float] = {}


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    parent = tmp_path_factory.mktemp("neo-models")
    built = {}
    for name, generate in GENERATORS.items():
        start = time.perf_counter()
        built[name] = generate(parent)
        BUILD_SECONDS[name] = time.perf_counter() - start
    return built


@pytest.fixture(scope="module")
def dlr():
    """The dlr package, imported in this process only after its phone-home is off."""
    nm.disable_dlr_telemetry()
    import dlr as module
    return module


# ----------------------------------------------------------------------------------------------- helpers

PRELUDE = f"""
import json, sys
sys.path.insert(0, {str(HERE)!r})
import neo_models
neo_models.disable_dlr_telemetry()
import dlr
import numpy as np
"""

# Loads argv[1] with the DLRModel keyword arguments in argv[2]; on success runs the tree rows (Treelite) or a
# ones input (TVM) and reports the outputs and which libdlr.so files this process has mapped.
LOAD = """
start = time.perf_counter()
try:
    model = dlr.DLRModel(sys.argv[1], "cpu", 0, **json.loads(sys.argv[2]))
except Exception as error:
    result = {"loaded": False, "type": type(error).__name__, "message": str(error)}
else:
    backend = model._impl.backend
    x = neo_models.TREE_ROWS if backend == "treelite" else {"data": np.ones((1, 4), np.float32)}
    result = {"loaded": True, "backend": backend, "version": model.get_version(),
              "out": model.run(x)[0].tolist(),
              "libdlr": sorted({line.split()[-1] for line in open("/proc/self/maps")
                                if line.rstrip().endswith("/libdlr.so")})}
result["seconds"] = time.perf_counter() - start
print("RESULT " + json.dumps(result))
"""


def in_subprocess(body: str, *args: object, prelude: str = PRELUDE, env: dict | None = None,
                  timeout: float = 20) -> tuple[subprocess.CompletedProcess, dict | None]:
    """Run `prelude + body` in a fresh interpreter; returns the process and its last `RESULT {json}` line."""
    code = "import time\n" + prelude + textwrap.dedent(body)
    run = subprocess.run([sys.executable, "-c", code, *map(str, args)], cwd=REPO, capture_output=True,
                         text=True, timeout=timeout, env=env)
    lines = [line[len("RESULT "):] for line in run.stdout.splitlines() if line.startswith("RESULT ")]
    return run, json.loads(lines[-1]) if lines else None


def load_in_subprocess(model_dir: Path, **kwargs) -> tuple[subprocess.CompletedProcess, dict]:
    run, result = in_subprocess(LOAD, model_dir, json.dumps(kwargs))
    assert run.returncode == 0 and result is not None, run.stdout + run.stderr
    return run, result


def only_dlr_error_lines(stderr: str) -> str:
    return "\n".join(line for line in stderr.splitlines() if "[bt]" not in line)


# ----------------------------------------------------------------------------------------------- builds

def test_every_generator_builds_its_directory_in_well_under_a_second(models):
    expected = {
        "trees": {"compiled.so"},
        "classifier": {"compiled.so", "compiled_model.json", "compiled.params", "compiled.meta"},
        "nometa": {"compiled.so", "compiled_model.json", "compiled.params"},
        "image": {"compiled.so", "compiled_model.json", "compiled.params", "compiled.meta", "model-shapes.json"},
        "two_params": {"compiled.so", "compiled_model.json", "compiled.params", "compiled.meta", "extra.params"},
        "treelite3": {"compiled.so"},
        "tl2cgen": {"compiled.so"},
        "broken_libdlr": {"compiled.so", "libdlr.so"},
        "own_libdlr": {"compiled.so", "libdlr.so"},
    }
    for name, files in expected.items():
        assert {p.name for p in models[name].iterdir()} == files, name
    slow = {name: round(seconds, 3) for name, seconds in BUILD_SECONDS.items() if seconds > 2.0}
    assert not slow, f"builds over 2 s: {slow} (all: {BUILD_SECONDS})"


def test_gcc_shared_reports_compiler_errors(tmp_path):
    with pytest.raises(RuntimeError, match="gcc failed"):
        nm.gcc_shared({"bad.c": "int f(void) { return }\n"}, tmp_path / "bad.so")
    assert not (tmp_path / "bad.so").exists()


def test_generators_refuse_an_existing_directory(tmp_path):
    nm.tl2cgen_abi(tmp_path)
    with pytest.raises(FileExistsError):
        nm.tl2cgen_abi(tmp_path)


def test_params_bytes_follow_the_tvm_layout():
    blob = nm.params_bytes({"w": np.array([[1.0, 2.0]], dtype=np.float32)})
    expected = (nm.LIST_MAGIC.to_bytes(8, "little") + bytes(8) + (1).to_bytes(8, "little")
                + (1).to_bytes(8, "little") + b"w" + (1).to_bytes(8, "little")
                + nm.ARRAY_MAGIC.to_bytes(8, "little") + bytes(8)
                + (1).to_bytes(4, "little") + (0).to_bytes(4, "little") + (2).to_bytes(4, "little")
                + bytes([2, 32]) + (1).to_bytes(2, "little")
                + (1).to_bytes(8, "little") + (2).to_bytes(8, "little") + (8).to_bytes(8, "little")
                + np.array([1.0, 2.0], dtype="<f4").tobytes())
    assert blob == expected


# ----------------------------------------------------------------------------------------------- recipe A

def test_treelite_oracle_gives_the_documented_values():
    assert np.array_equal(nm.treelite_reference(nm.TREE_ROWS), nm.TREE_EXPECTED)
    assert nm.treelite_reference(np.array([[1, np.nan, 3]])).tolist() == [[-1.0]]  # column 1 matters
    assert nm.treelite_reference(np.array([[1.0]])).tolist() == [[-1.0]]  # missing columns 1 and 2


def test_treelite_trees_run_under_dlr_exactly_as_the_oracle(models, dlr):
    model = dlr.DLRModel(str(models["trees"]), "cpu", 0)
    assert model._impl.backend == "treelite"
    assert model.get_input_names() == ["data"] and model.get_output_names() == []
    assert model.get_version() == "1.6.0"
    out = model.run(nm.TREE_ROWS)[0]
    assert out.dtype == np.float32 and out.shape == (3, 1)
    assert out.ravel().tolist() == [3.0, -3.0, 3.0]

    rng = np.random.default_rng(3)
    rows = rng.integers(0, 10, size=(64, 3)).astype(np.float64)
    rows[rng.random(rows.shape) < 0.2] = np.nan  # NaN = missing
    rows = np.vstack([rows, [[1, np.nan, 3], [np.nan, np.nan, np.nan], [4, 4, 4], [6, 3.999, 6]]])
    assert np.array_equal(model.run(rows)[0], nm.treelite_reference(rows))
    narrow = np.array([[1.0], [7.0]], dtype=np.float32)  # fewer columns than features: the rest are missing
    assert np.array_equal(model.run(narrow)[0], nm.treelite_reference(narrow))


# ----------------------------------------------------------------------------------------------- recipe B

def test_tvm_classifier_matches_numpy_within_1e_6(models, dlr):
    model = dlr.DLRModel(str(models["classifier"]), "cpu", 0)
    assert model._impl.backend == "tvm"
    assert model.get_input_names() == ["data"] and model._impl.weight_names == ["p0", "p1"]
    assert model.get_output_names() == ["probabilities"] and model.has_metadata()
    assert model.get_input_dtypes() == ["float32"] and model.get_output_dtypes() == ["float32"]
    rng = np.random.default_rng(5)
    worst = 0.0
    for _ in range(20):
        x = rng.uniform(-3, 3, size=(1, 4)).astype(np.float32)
        for given in (x, {"data": x}, x.astype(np.float64)):  # any numeric dtype is cast to float32
            out = model.run(given)
            assert len(out) == 1 and out[0].shape == (1, 3) and out[0].dtype == np.float32
            worst = max(worst, float(np.abs(out[0] - nm.classifier_reference(x)).max()))
    assert worst <= 1e-6


def test_tvm_classifier_without_meta_runs_and_has_no_output_names(models, dlr):
    model = dlr.DLRModel(str(models["nometa"]), "cpu", 0)
    assert not model.has_metadata() and model.get_output_names() == []
    x = np.array([[0.5, -1.0, 2.0, 0.25]], dtype=np.float32)
    assert np.abs(model.run(x)[0] - nm.classifier_reference(x)).max() <= 1e-6


def test_tvm_classifier_error_texts_are_the_spec_oracles(models, dlr, tmp_path):
    model = dlr.DLRModel(str(models["classifier"]), "cpu", 0)
    with pytest.raises(ValueError) as unknown:
        model.run({"nope": np.zeros((1, 4), np.float32)})
    assert str(unknown.value) == "nope is not a valid input name."
    with pytest.raises(dlr.dlr_model.DLRError) as size:
        model.run({"data": np.zeros((1, 5), np.float32)})
    assert "Mismatch found in input data size. Value read: 5, Expected: 4" in str(size.value)
    assert str(size.value).startswith("TVMError: Check failed: read_size == expected_size (5 vs. 4)")
    with pytest.raises(ValueError) as as_list:
        model.run([1.0, 2.0, 3.0, 4.0])
    assert str(as_list.value) == ("input_values must be of type dict (tvm model) or a np.ndarray/generic "
                                  "(representing treelite models)")
    with pytest.raises(ValueError) as missing:
        dlr.DLRModel(str(tmp_path / "absent"), "cpu", 0)
    assert str(missing.value) == f"model_path {tmp_path / 'absent'} doesn't exist"


def test_tvm_input_check_is_on_element_count_only_and_weights_can_be_overwritten(models, dlr):
    """Facts smserve must not rely on DLR for: shape is not checked (only the element count), and run() accepts
    weight names and overwrites the weights for every later run of that instance."""
    model = dlr.DLRModel(str(models["classifier"]), "cpu", 0)
    x = np.arange(4, dtype=np.float32)
    expected = nm.classifier_reference(x)
    for shape in ((4,), (4, 1), (2, 2)):
        assert np.abs(model.run({"data": x.reshape(shape)})[0] - expected).max() <= 1e-6
    model.run({"p0": np.zeros((3, 4), np.float32), "data": x.reshape(1, 4)})
    changed = model.run({"data": x.reshape(1, 4)})[0]
    assert np.abs(changed - expected).max() > 0.1  # p0 stayed zero: softmax of the bias alone
    bias = np.exp(nm.CLASSIFIER_B - nm.CLASSIFIER_B.max())
    assert np.abs(changed - bias / bias.sum()).max() <= 1e-6


def test_image_model_matches_numpy_and_dlr_ignores_model_shapes_json(models, dlr):
    directory = models["image"]
    assert json.loads((directory / "model-shapes.json").read_text()) == [{"name": "data",
                                                                         "shape": [1, 3, 224, 224]}]
    model = dlr.DLRModel(str(directory), "cpu", 0)  # two *.json files: model-shapes.json is not a graph
    assert model.get_input_names() == ["data"] and model.get_output_names() == ["scores"]
    rng = np.random.default_rng(11)
    image = rng.integers(0, 256, size=(3, 224, 224), dtype=np.uint8)
    out = model.run(image[None])[0]  # uint8, cast by DLR to the declared float32
    assert out.shape == (1, 6) and np.array_equal(out, nm.image_reference(image))
    floats = rng.uniform(0, 255, size=(1, 3, 224, 224)).astype(np.float32)
    assert np.abs(model.run({"data": floats})[0] - nm.image_reference(floats)).max() <= 1e-6
    assert nm.image_reference(np.full((3, 2, 2), 7, np.uint8)).tolist() == [[7.0] * 6]


def test_one_channel_non_square_image_model_matches_numpy(models, dlr):
    assert json.loads((models["grey"] / "model-shapes.json").read_text())[0]["shape"] == [1, 1, 28, 20]
    model = dlr.DLRModel(str(models["grey"]), "cpu", 0)
    grey = np.random.default_rng(2).integers(0, 256, size=(28, 20), dtype=np.uint8)
    out = model.run(grey[None, None])[0]
    assert out.shape == (1, 2) and np.array_equal(out, nm.image_reference(grey))


# ----------------------------------------------------------------------------------------------- bad artifacts

def test_gpu_meta_on_cpu_is_an_empty_dlrerror_with_the_reason_on_stderr(models):
    run, result = load_in_subprocess(models["gpu"])
    assert result["loaded"] is False and result["type"] == "DLRError" and result["message"] == ""
    assert 'Compiled model requires device type "gpu" but user gave "cpu".' in run.stderr


def test_two_params_files_are_an_empty_dlrerror_naming_both_on_stderr(models):
    run, result = load_in_subprocess(models["two_params"])
    assert result["loaded"] is False and result["type"] == "DLRError" and result["message"] == ""
    line = next(line for line in run.stderr.splitlines() if "Found multiple *.params files:" in line)
    assert str(models["two_params"] / "extra.params") in line
    assert str(models["two_params"] / "compiled.params") in line


def test_a_load_error_repeats_the_previous_stale_dlr_message(models):
    """DLRGetLastError is not cleared by a failing load: the message is the last run error, not the cause."""
    body = """
    model = dlr.DLRModel(sys.argv[1], "cpu", 0)
    try:
        model.run({"data": np.zeros((1, 5), np.float32)})
    except dlr.dlr_model.DLRError:
        pass
    try:
        dlr.DLRModel(sys.argv[2], "cpu", 0)
        result = {"loaded": True}
    except dlr.dlr_model.DLRError as error:
        result = {"loaded": False, "message": str(error)}
    print("RESULT " + json.dumps(result))
    """
    run, result = in_subprocess(body, models["classifier"], models["two_params"])
    assert result is not None, run.stderr
    assert result["loaded"] is False
    assert "Mismatch found in input data size. Value read: 5, Expected: 4" in result["message"]
    assert "Found multiple *.params files:" in run.stderr


@pytest.mark.parametrize("name", ["treelite3", "tl2cgen"])
def test_newer_treelite_abis_are_refused_by_libdlr_160_without_hanging(models, name):
    start = time.perf_counter()
    run, result = load_in_subprocess(models[name])
    assert time.perf_counter() - start < 10  # checklist 30
    assert result["loaded"] is False and result["type"] == "DLRError" and result["message"] == ""
    reason = only_dlr_error_lines(run.stderr)
    assert (f"Dynamic shared library `{models[name] / 'compiled.so'}' does not contain valid "
            "get_num_output_group() function") in reason


def test_model_dir_libdlr_that_cannot_load_fails_in_dlopen_naming_the_missing_library(models):
    run, result = load_in_subprocess(models["broken_libdlr"])
    assert result["loaded"] is False and result["type"] == "DLRError"
    assert result["message"].startswith("DLR library (libdlr.so) could not be loaded.\n")
    assert ("Error message(s): libnvinfer_missing.so: cannot open shared object file: No such file or directory"
            in result["message"])
    assert f"Found libdlr.so in model artifact. Using dlr from {models['broken_libdlr'] / 'libdlr.so'}" in run.stderr
    # no fallback inside dlr 1.6.0; use_default_dlr=True is the way around it
    _, default = load_in_subprocess(models["broken_libdlr"], use_default_dlr=True)
    assert default["loaded"] is True and default["out"] == [[3.0], [-3.0], [3.0]]
    assert default["libdlr"] == [str(nm.default_libdlr())]


def test_model_dir_libdlr_is_preferred_and_use_default_dlr_ignores_it(models):
    own = models["own_libdlr"] / "libdlr.so"
    assert own.read_bytes() == nm.default_libdlr().read_bytes()
    run, result = load_in_subprocess(models["own_libdlr"])
    assert result["loaded"] is True, run.stderr
    assert result["libdlr"] == [str(own)] and result["version"] == "1.6.0"
    assert result["out"] == [[3.0], [-3.0], [3.0]]
    _, default = load_in_subprocess(models["own_libdlr"], use_default_dlr=True)
    assert default["libdlr"] == [str(nm.default_libdlr())] and default["out"] == [[3.0], [-3.0], [3.0]]


# ----------------------------------------------------------------------------------------------- ABI detection

def test_elf_reader_tells_the_treelite_abis_apart_like_nm(models):
    expected = {"trees": "treelite-0.9x", "treelite3": "treelite-1.x-3.x", "tl2cgen": "tl2cgen",
                "classifier": "unknown", "image": "unknown"}
    for name, abi in expected.items():
        assert nm.so_abi(nm.elf_exported_symbols(models[name] / "compiled.so")) == abi, name
    assert nm.elf_exported_symbols(models["classifier"] / "compiled.so") >= {
        "fused_nn_dense_add", "fused_nn_softmax", "__tvm_module_ctx"}
    libdlr_symbols = nm.elf_exported_symbols(nm.default_libdlr())
    assert {"CreateDLRModel", "RunDLRModel", "DLRGetLastError"} <= libdlr_symbols
    assert nm.so_abi(libdlr_symbols) == "unknown"
    with pytest.raises(ValueError, match="not an ELF64"):
        nm.elf_exported_symbols(models["classifier"] / "compiled.params")
    if shutil.which("nm") is None:
        return
    for path in [models[name] / "compiled.so" for name in expected] + [nm.default_libdlr()]:
        listing = subprocess.run(["nm", "-D", "--defined-only", str(path)], capture_output=True, text=True,
                                 check=True).stdout
        assert nm.elf_exported_symbols(path) == {line.split()[-1] for line in listing.splitlines()}, path


CTYPES_PROBE = """
import ctypes, os, sys
path = sys.argv[1]

def snapshot():
    status = dict(line.split(":", 1) for line in open("/proc/self/status"))
    return {"threads": status["Threads"].strip(), "fds": sorted(os.listdir("/proc/self/fd")),
            "files": sorted(os.listdir(os.path.dirname(path))), "env": dict(os.environ), "cwd": os.getcwd()}

before = snapshot()
start = time.perf_counter()
library = ctypes.CDLL(path)
found = sorted(name for name in json.loads(sys.argv[2]) if hasattr(library, name))
seconds = time.perf_counter() - start
after = snapshot()
print("RESULT " + json.dumps({"found": found, "seconds": seconds, "same": before == after}))
"""


@pytest.mark.parametrize("name", ["trees", "treelite3", "tl2cgen"])
def test_ctypes_loading_a_treelite_library_has_no_visible_side_effects(models, name):
    """ctypes.CDLL + hasattr is an alternative to reading the ELF file: same answer, nothing printed, no thread,
    file descriptor, file or environment change (the library stays mapped, though: ctypes never unloads)."""
    probe = ["get_num_output_group", "get_num_class", "get_pred_transform", "get_num_target", "postprocess",
             "predict", "predict_multiclass"]
    path = models[name] / "compiled.so"
    run, result = in_subprocess(CTYPES_PROBE, path, json.dumps(probe), prelude="import json\n")
    assert run.returncode == 0 and result is not None, run.stderr
    assert result["same"] and run.stderr == ""
    assert run.stdout.splitlines() == ["RESULT " + json.dumps(result)]
    assert set(result["found"]) == nm.elf_exported_symbols(path) & set(probe)


# ----------------------------------------------------------------------------------------------- telemetry

TELEMETRY_PROBE = """
import json, sys
events = []
# name lookups and outgoing traffic; `import dlr` imports requests, whose urllib3 binds a socket to ::1 at import
# time to probe IPv6 support (socket.__new__, socket.bind): local only, so not counted
NETWORK = {"socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex", "socket.gethostbyaddr",
           "socket.connect", "socket.sendto", "socket.sendmsg"}

def no_network(event, args):
    if event in NETWORK:
        events.append(event)
        raise RuntimeError("network blocked by the test: " + event)

sys.addaudithook(no_network)
sys.path.insert(0, sys.argv[2])
import neo_models
if sys.argv[3] == "helper":
    neo_models.disable_dlr_telemetry()
import dlr
import numpy as np
model = dlr.DLRModel(sys.argv[1], "cpu", 0)
out = model.run(neo_models.TREE_ROWS)[0].ravel().tolist()
print("RESULT " + json.dumps({"events": events, "out": out, "dlr": dlr.__file__}))
"""


@pytest.fixture()
def dlr_copy(tmp_path) -> Path:
    """A private copy of the dlr Python package without ccm_config.json: its config file can be created,
    checked and removed without touching the venv (the copy still finds the venv's libdlr.so via sys.prefix)."""
    root = tmp_path / "pkgs"
    shutil.copytree(nm.dlr_package_dir(), root / "dlr",
                    ignore=shutil.ignore_patterns("__pycache__", "ccm_config.json"))
    return root


def run_telemetry_probe(model_dir: Path, dlr_root: Path, mode: str) -> tuple[subprocess.CompletedProcess, dict]:
    env = {**os.environ, "PYTHONPATH": str(dlr_root)}
    run, result = in_subprocess(TELEMETRY_PROBE, model_dir, HERE, mode, prelude="", env=env)
    assert result is not None, run.stdout + run.stderr
    assert result["dlr"] == str(dlr_root / "dlr" / "__init__.py")
    assert result["out"] == [3.0, -3.0, 3.0]
    return run, result


def test_import_dlr_without_config_prints_the_notice_and_tries_the_network(models, dlr_copy):
    """The control: with no ccm_config.json dlr 1.6.0 phones home at import (blocked here by an audit hook)."""
    run, result = run_telemetry_probe(models["trees"], dlr_copy, "plain")
    assert "CALL HOME FEATURE ENABLED" in run.stdout
    assert "socket.getaddrinfo" in result["events"]
    assert (dlr_copy / "dlr" / "counter" / "ccm_config.json").exists()  # dlr wrote its own file


def test_disable_dlr_telemetry_makes_import_and_load_silent_and_offline(models, dlr_copy):
    config = dlr_copy / "dlr" / "counter" / "ccm_config.json"
    run, result = run_telemetry_probe(models["trees"], dlr_copy, "helper")
    assert result["events"] == []
    assert "CALL HOME" not in run.stdout + run.stderr
    assert json.loads(config.read_text()) == nm.TELEMETRY_OFF
    written = config.stat().st_mtime_ns
    run, result = run_telemetry_probe(models["trees"], dlr_copy, "helper")  # file present: not rewritten
    assert result["events"] == [] and "CALL HOME" not in run.stdout + run.stderr
    assert config.stat().st_mtime_ns == written


def test_disable_dlr_telemetry_overrides_a_config_that_enables_phone_home(models, dlr_copy):
    config = dlr_copy / "dlr" / "counter" / "ccm_config.json"
    config.write_text(json.dumps({"enable_phone_home": True}))
    run, result = run_telemetry_probe(models["trees"], dlr_copy, "helper")
    assert result["events"] == [] and "CALL HOME" not in run.stdout + run.stderr
    assert json.loads(config.read_text()) == nm.TELEMETRY_OFF
