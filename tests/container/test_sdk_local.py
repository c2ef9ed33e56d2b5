"""The SageMaker Python SDK (v2 line) in local mode against the family image (issue 11 item 4): the client users
already have, unmodified, deploying `Model(image_uri=..., model_data="file://...")` and the family's framework
model (`PyTorchModel` / `MXNetModel` with entry_point and source_dir), predicting with its JSON, CSV and NumPy
serializers.

The SDK runs in its own environment (.venv/sdk, `make venv-sdk`, requirements/sdk.txt) through
tests/container/sdk_local_driver.py; its compose tool is Debian's docker-compose. The only change made to
what the SDK does is in the driver: the compose file is switched to the host network, because this machine has
no bridge network (the driver's docstring says how). The SDK leaves its stopped containers behind; the test
removes every container whose compose folder it created.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ..families import MATRIX
from ..models import pack
from .conftest import FAMILY, REPO, debian_tool, docker, free_port, make_model_dir

ROWS = [[1.0, 2.0, 3.0, 4.0], [0.5, 0.0, -1.0, 1.0]]
DRIVER = Path(__file__).with_name("sdk_local_driver.py")
FRAMEWORK_MODEL = {"pytorch": "pytorch", "mxnet": "mxnet"}

# Family-neutral user code for the framework-model case: model_fn reads a file of the model archive, a helper
# module comes from source_dir, transform_fn speaks JSON, CSV and NPY with numpy only.
ENTRY_POINT = '''
import io
import json
from pathlib import Path

import numpy as np

from helper import FACTOR


def model_fn(model_dir):
    return float((Path(model_dir) / "scale.txt").read_text())


def transform_fn(scale, body, content_type, accept):
    if content_type == "application/json":
        rows = np.asarray(json.loads(body), dtype=np.float32)
    elif content_type == "text/csv":
        rows = np.loadtxt(io.StringIO(body.decode() if isinstance(body, bytes) else body), delimiter=",", ndmin=2)
    else:
        rows = np.load(io.BytesIO(body), allow_pickle=False)
    result = (rows * scale * FACTOR).astype(np.float32)
    if accept == "text/csv":
        return "\\n".join(",".join(repr(float(v)) for v in row) for row in result), accept
    if accept == "application/x-npy":
        out = io.BytesIO()
        np.save(out, result, allow_pickle=False)
        return out.getvalue(), accept
    return json.dumps(result.tolist()), "application/json"
'''


@pytest.fixture(scope="module")
def sdk_python() -> Path:
    """.venv/sdk, created by the Makefile rule when missing (make test depends on it; standalone runs too)."""
    done = subprocess.run(["make", "-s", ".venv/sdk/.installed"], cwd=REPO, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    debian_tool("docker-compose", "docker-compose")
    return REPO / ".venv" / "sdk" / "bin" / "python"


def readable(root: Path) -> None:
    for path in [root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


def run_sdk(sdk_python: Path, image: str, tmp_path: Path, model_data: str, *extra: str) -> dict:
    """One deploy + three predictions + delete, through the real SDK; returns what the predictors gave."""
    root = tmp_path / "sdk-root"
    root.mkdir()
    out = tmp_path / "results.json"
    env = {**os.environ, "AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "SAGEMAKER_SUPPRESS_V2_WARNING": "1", "PYTHONPATH": ""}
    command = [str(sdk_python), str(DRIVER), "--image", image, "--model-data", model_data, "--port",
               str(free_port()), "--root", str(root), "--rows", json.dumps(ROWS), "--out", str(out), *extra]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    finally:
        remove_sdk_containers(root)
    assert done.returncode == 0 and out.is_file(), f"SDK run failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return {"results": json.loads(out.read_text()), "log": done.stdout + done.stderr}


def remove_sdk_containers(root: Path) -> None:
    listed = docker("ps", "-a", "--format", '{{.ID}} {{.Label "com.docker.compose.project.working_dir"}}',
                    check=False).stdout.split("\n")
    ours = [line.split()[0] for line in listed if len(line.split()) == 2 and line.split()[1].startswith(str(root))]
    if ours:
        docker("rm", "-f", *ours, check=False)


def assert_rows(actual, expected, what: str) -> None:
    flat_actual = [float(v) for row in actual for v in row]
    flat_expected = [float(v) for row in expected for v in row]
    assert len(flat_actual) == len(flat_expected), (what, actual, expected)
    for got, want in zip(flat_actual, flat_expected):
        assert math.isclose(got, want, rel_tol=1e-5, abs_tol=1e-6), (what, actual, expected)


def assert_all_serializers(results: dict, expected: list) -> None:
    assert_rows(results["json"], expected, "JSONSerializer/JSONDeserializer")
    assert_rows(results["csv"], expected, "CSVSerializer/CSVDeserializer")
    assert results["npy"]["dtype"] == "float32", results["npy"]
    assert_rows(results["npy"]["values"], expected, "NumpySerializer/NumpyDeserializer")


def test_sdk_local_mode_model_with_image_uri_serves_the_default_handlers(sdk_python, image, tmp_path):
    """issue 11 item 4: `Model(image_uri=<our image>, model_data="file://model.tar.gz").deploy(instance_type=
    "local")` serves the family's default model; JSON, CSV and NumPy serializers get what the framework computes.
    The SDK extracts the archive beside itself in the folder it mounts: no nested-archive warning for that."""
    from ..families import family_models

    model_dir = make_model_dir(tmp_path / "src")
    archive = tmp_path / "model.tar.gz"
    subprocess.run([sys.executable, "-m", "smserve", "package", str(model_dir), "-o", str(archive)], check=True,
                   capture_output=True, timeout=60)
    run = run_sdk(sdk_python, image, tmp_path, str(archive))
    assert_all_serializers(run["results"], family_models().predict_default(model_dir, ROWS))
    assert "ready: " in run["log"], run["log"][-3000:]
    assert "never extracted" not in run["log"], run["log"][-3000:]


def test_sdk_local_mode_framework_model_with_entry_point_and_source_dir(sdk_python, image, tmp_path):
    """issue 11 item 4: the family's framework model class (`PyTorchModel` / `MXNetModel`) with entry_point and
    source_dir: the SDK repacks the code into the archive and sets SAGEMAKER_PROGRAM/SAGEMAKER_SUBMIT_DIRECTORY;
    the entry point imports a helper module from source_dir and reads a file of the model archive."""
    if FAMILY not in FRAMEWORK_MODEL:
        pytest.skip(f"the SDK has no framework model class for {FAMILY} with entry_point in this test")
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "scale.txt").write_text("2.0")
    source = tmp_path / "source"
    source.mkdir()
    (source / "inference.py").write_text(ENTRY_POINT)
    (source / "helper.py").write_text("FACTOR = 1.5\n")
    readable(tmp_path)
    archive = str(pack(weights, tmp_path / "model.tar.gz"))
    version = MATRIX["families"][FAMILY]["framework_version"]
    run = run_sdk(sdk_python, image, tmp_path, archive, "--framework", FRAMEWORK_MODEL[FAMILY],
                  "--framework-version", version, "--source-dir", str(source), "--entry-point", "inference.py")
    assert_all_serializers(run["results"], [[value * 3.0 for value in row] for row in ROWS])
    shutil.rmtree(tmp_path / "sdk-root", ignore_errors=True)
