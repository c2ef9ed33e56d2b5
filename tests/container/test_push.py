"""`smserve push` / `make push` (issue 11) end to end on this machine, no AWS account: the ECR API calls go to
moto's server mode on 127.0.0.1 (AWS_ENDPOINT_URL_ECR), the image goes to a real registry on 127.0.0.1 (Debian's
docker-registry, installed here when missing), through the real Docker engine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import boto3
import pytest

from .conftest import debian_tool, docker, free_port

REGISTRY_CONFIG = """version: 0.1
storage:
  filesystem:
    rootdirectory: {root}
http:
  addr: 127.0.0.1:{port}
"""


def wait_http(url: str, timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(url)


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    binary = debian_tool("docker-registry", "docker-registry")
    root = tmp_path_factory.mktemp("registry")
    port = free_port()
    (root / "config.yml").write_text(REGISTRY_CONFIG.format(root=root / "data", port=port))
    process = subprocess.Popen([binary, "serve", str(root / "config.yml")], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{port}/v2/")
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture(scope="module")
def ecr_api():
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{port}/moto-api/")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


def aws_env(ecr_api: str) -> dict:
    return {**os.environ, "AWS_ENDPOINT_URL_ECR": ecr_api, "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1"}


def test_make_push_creates_the_repository_pushes_and_prints_the_uri(image, registry, ecr_api):
    repo = Path(__file__).resolve().parents[2]
    family = image.split("/")[-1].split(":")[0].removeprefix("smserve-")
    done = subprocess.run(["make", "-s", "push", f"REGISTRY={registry}", "REGION=us-east-1",
                           f"FAMILY={family}", f"PUSH_IMAGE={image}", f"HOSTPY={sys.executable}"],
                          cwd=repo, env=aws_env(ecr_api), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    repository, tag = image.split("/")[-1].split(":")
    uri = f"{registry}/{repository}:{tag}"
    assert f"created repository {registry}/{repository}" in done.stdout
    assert f"image URI for SageMaker: {uri}" in done.stdout
    # the registry has it, with the same image id as the local one
    tags = json.load(urllib.request.urlopen(f"http://{registry}/v2/{repository}/tags/list"))
    assert tags["tags"] == [tag]
    ecr = boto3.client("ecr", endpoint_url=ecr_api, region_name="us-east-1", aws_access_key_id="testing",
                       aws_secret_access_key="testing")
    assert [r["repositoryName"] for r in ecr.describe_repositories()["repositories"]] == [repository]
    docker("rmi", uri, check=False)
    pulled = docker("pull", uri, check=False, timeout=600)
    assert pulled.returncode == 0, pulled.stderr
    assert docker("image", "inspect", "-f", "{{.Id}}", uri).stdout == docker("image", "inspect", "-f", "{{.Id}}",
                                                                             image).stdout
    docker("rmi", uri, check=False)
    # a second push finds the repository
    again = subprocess.run([sys.executable, "-m", "smserve", "push", image, "--registry", registry, "--region",
                            "us-east-1"], env=aws_env(ecr_api), capture_output=True, text=True, timeout=900)
    assert again.returncode == 0 and "created repository" not in again.stdout, again.stdout + again.stderr


@pytest.mark.parametrize("case", ["no image", "no credentials", "unreachable registry", "not ecr, no region"])
def test_push_failures_say_what_to_fix(image, ecr_api, case):
    env, args = aws_env(ecr_api), [image, "--registry", f"127.0.0.1:{free_port()}", "--region", "us-east-1"]
    expected = "the registry 127.0.0.1"
    if case == "no image":
        args[0], expected = "smserve-none:0", "image smserve-none:0 is not on this machine"
    elif case == "no credentials":
        env = {k: v for k, v in env.items() if not k.startswith("AWS_ACCESS") and not k.startswith("AWS_SECRET")}
        env.update(AWS_SHARED_CREDENTIALS_FILE="/nonexistent", AWS_CONFIG_FILE="/nonexistent",
                   AWS_EC2_METADATA_DISABLED="true")
        expected = "no AWS credentials found"
    elif case == "unreachable registry":
        expected = "failed"
    else:
        args = args[:3]
        expected = "pass --region"
    done = subprocess.run([sys.executable, "-m", "smserve", "push", *args], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr
    assert expected in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
