"""`smserve local` (issue 11): a model archive served by the family image the way SageMaker runs it, reached
with boto3's real `invoke_endpoint`, stopped with Ctrl-C; and what it says when it cannot start."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest

from ..models import make_dir, write_code
from .conftest import FAMILY, docker, free_port

pytestmark = pytest.mark.skipif(FAMILY == "tensorflow", reason="these archives hold model_fn/transform_fn scripts; "
                                "the TensorFlow family serves SavedModels (test_tensorflow_contract.py)")

DOUBLER = '''
import json


def model_fn(model_dir):
    return 2


def transform_fn(model, body, content_type, accept):
    return json.dumps([value * model for value in json.loads(body)]), "application/json"
'''


def archive(tmp_path: Path, source: str | None) -> Path:
    folder = make_dir(tmp_path, "folder")
    (folder / "weights.bin").write_bytes(b"\x01" * 16)
    if source is not None:
        write_code(folder, source, where="")
    out = tmp_path / "model.tar.gz"
    subprocess.run([sys.executable, "-m", "smserve", "package", str(folder), "-o", str(out)], check=True,
                   capture_output=True, timeout=60)
    return out


def smserve_local(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "smserve", "local", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def test_local_serves_the_archive_like_sagemaker_and_stops_on_ctrl_c(image, tmp_path):
    port = free_port()
    process = smserve_local(str(archive(tmp_path, DOUBLER)), "--image", image, "--port", str(port),
                            "--instance-type", "ml.c5.large")
    lines = []
    try:
        for line in process.stdout:
            lines.append(line)
            if line.startswith("ready: "):
                break
        assert lines and lines[-1].startswith(f"ready: http://127.0.0.1:{port}"), lines
        name = f"smserve-local-{port}"
        config = json.loads(docker("inspect", name).stdout)[0]
        assert config["HostConfig"]["NanoCpus"] == 2_000_000_000 and config["HostConfig"]["Memory"] == 4 * 2**30
        assert config["HostConfig"]["ReadonlyRootfs"] is True and config["Config"]["User"] == "1000:1000"
        mount = next(m for m in config["Mounts"] if m["Destination"] == "/opt/ml/model")
        assert mount["RW"] is False
        runtime = boto3.client("sagemaker-runtime", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                               aws_access_key_id="local", aws_secret_access_key="local")
        answer = runtime.invoke_endpoint(EndpointName="local", Body="[1, 2.5]", ContentType="application/json")
        assert json.loads(answer["Body"].read()) == [2, 5.0]
        process.send_signal(signal.SIGINT)
        assert process.wait(60) == 0
        assert docker("inspect", name, check=False).returncode != 0  # removed
        assert not Path(mount["Source"]).exists()  # the extracted archive too
    finally:
        if process.poll() is None:
            process.kill()
        docker("rm", "-f", f"smserve-local-{port}", check=False)


def test_local_reports_a_container_that_cannot_start_with_its_log(image, tmp_path):
    empty_code = archive(tmp_path, None)  # weights.bin only: no model_fn and nothing the default loads
    process = smserve_local(str(empty_code), "--image", image, "--port", str(free_port()), "--timeout", "120")
    output = process.communicate(timeout=180)[0]
    assert process.returncode == 1, output
    assert "the container exited with status 1 before it was ready" in output
    assert ("no model_fn is defined" in output or "could not load" in output
            or "holds no Neo-compiled model" in output), output


def test_local_refuses_unknown_instance_types_and_missing_images(tmp_path):
    model = archive(tmp_path, DOUBLER)
    started = time.monotonic()
    output = subprocess.run([sys.executable, "-m", "smserve", "local", str(model), "--image", "smserve-none:0",
                             "--instance-type", "ml.x9.huge"], capture_output=True, text=True, timeout=60)
    assert output.returncode == 1 and "unknown instance type 'ml.x9.huge'" in output.stderr
    output = subprocess.run([sys.executable, "-m", "smserve", "local", str(model), "--image", "smserve-none:0"],
                            capture_output=True, text=True, timeout=60)
    assert output.returncode == 1 and "image smserve-none:0 is not on this machine" in output.stderr, output.stderr
    assert time.monotonic() - started < 60
