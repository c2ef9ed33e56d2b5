"""`smserve local`: a model archive served by its family image the way SageMaker runs it, on this machine.

SageMaker extracts model.tar.gz to /opt/ml/model, runs the image with `serve`, gives the container the
instance type's CPUs and memory, and the image runs as a non-root user on a read-only root filesystem with a
writable /tmp. This does the same through the Docker engine's API (the docker SDK), on the host network, and
prints the URL that boto3's `invoke_endpoint(endpoint_url=...)` and plain HTTP clients use.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from .archive import extract

# vCPUs and GiB of memory of the instance types people test with (AWS's published sizes)
INSTANCE_TYPES = {
    "ml.t2.medium": (2, 4), "ml.m5.large": (2, 8), "ml.m5.xlarge": (4, 16), "ml.m5.2xlarge": (8, 32),
    "ml.m5.4xlarge": (16, 64), "ml.c5.large": (2, 4), "ml.c5.xlarge": (4, 8), "ml.c5.2xlarge": (8, 16),
    "ml.c5.4xlarge": (16, 32), "ml.g4dn.xlarge": (4, 16), "ml.g5.xlarge": (4, 16), "ml.inf1.xlarge": (4, 8),
}
CONTAINER_MODEL_DIR = "/opt/ml/model"
LABEL = "ai.smserve.local"


class LocalError(Exception):
    """Why the local endpoint could not start; the message says what to do."""


@dataclass
class LocalEndpoint:
    container: object  # docker.models.containers.Container
    url: str
    cpus: float
    memory_bytes: int
    workdir: Path | None = None  # the extracted archive, removed by stop()
    notes: list[str] = field(default_factory=list)

    def logs(self) -> str:
        return self.container.logs().decode("utf-8", "replace")

    def stop(self, timeout: int = 30) -> None:
        import docker.errors

        try:
            self.container.stop(timeout=timeout)
            self.container.remove(force=True)
        except docker.errors.NotFound:
            pass
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)


def docker_client():
    try:
        import docker
    except ImportError:
        raise LocalError("the docker SDK is not installed; pip install 'smserve[tools]'") from None
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        raise LocalError(f"no Docker engine answers ({exc}); start Docker (or set DOCKER_HOST) and retry") \
            from None
    return client


def find_image(client, family: str, variant: str = "cpu") -> str:
    """The newest local smserve image of this family and variant (the `<framework>-<variant>` tag)."""
    candidates = []
    for image in client.images.list(name=f"smserve-{family}"):
        for tag in image.tags:
            if tag.endswith(f"-{variant}"):
                candidates.append((image.attrs.get("Created", ""), tag))
    if not candidates:
        raise LocalError(f"no smserve-{family} {variant} image on this machine; build it with "
                         f"`make image FAMILY={family} VARIANT={variant}` or pass --image")
    return max(candidates)[1]


def model_folder(source: Path) -> tuple[Path, Path | None]:
    """The folder to mount: `source`, or its archive extracted into a temporary folder (returned second)."""
    if source.is_dir():
        return source.resolve(), None
    if not source.is_file():
        raise LocalError(f"{source} does not exist; pass a model.tar.gz or a model folder")
    workdir = Path(tempfile.mkdtemp(prefix="smserve-local-"))
    try:
        extract(source, workdir)
        for path in [workdir, *workdir.rglob("*")]:  # readable by the image's non-root user
            path.chmod(0o755 if path.is_dir() else 0o644)
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    return workdir, workdir


def resources(instance_type: str) -> tuple[float, int, list[str]]:
    if instance_type not in INSTANCE_TYPES:
        raise LocalError(f"unknown instance type {instance_type!r}; known: {', '.join(sorted(INSTANCE_TYPES))}")
    vcpus, gib = INSTANCE_TYPES[instance_type]
    host = os.cpu_count() or 1
    notes = []
    if vcpus > host:
        notes.append(f"{instance_type} has {vcpus} vCPUs; this machine has {host}, so the container gets {host}")
    return float(min(vcpus, host)), gib * 2**30, notes


def start(source: Path, image: str | None, family: str, instance_type: str, port: int,
          env: dict[str, str], timeout: float) -> LocalEndpoint:
    cpus, memory, notes = resources(instance_type)
    client = docker_client()
    image = image or find_image(client, family)
    import docker.errors

    try:
        client.images.get(image)  # never pulled: a missing image is a mistake to report, not to fetch
    except docker.errors.ImageNotFound:
        raise LocalError(f"image {image} is not on this machine; build it (`make image`) or pull it") from None
    folder, workdir = model_folder(source)
    try:
        container = client.containers.run(
            image, ["serve"], detach=True, network_mode="host", user="1000:1000", read_only=True,
            tmpfs={"/tmp": "exec"}, nano_cpus=int(cpus * 1e9), mem_limit=memory,
            volumes={str(folder): {"bind": CONTAINER_MODEL_DIR, "mode": "ro"}},
            environment={"SAGEMAKER_BIND_TO_PORT": str(port), **env}, labels={LABEL: instance_type},
            name=f"smserve-local-{port}")
    except docker.errors.APIError as exc:
        if workdir:
            shutil.rmtree(workdir, ignore_errors=True)
        raise LocalError(f"docker could not start {image}: {exc.explanation or exc}") from None
    endpoint = LocalEndpoint(container, f"http://127.0.0.1:{port}", cpus, memory, workdir, notes)
    try:
        wait_ready(endpoint, timeout)
    except BaseException:
        endpoint.stop(timeout=5)
        raise
    return endpoint


def wait_ready(endpoint: LocalEndpoint, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        endpoint.container.reload()
        if endpoint.container.status == "exited":
            status = endpoint.container.attrs["State"]["ExitCode"]
            tail = "\n".join(endpoint.logs().splitlines()[-20:])
            raise LocalError(f"the container exited with status {status} before it was ready:\n{tail}")
        try:
            with urllib.request.urlopen(endpoint.url + "/ping", timeout=2) as ping:
                if ping.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise LocalError(f"not ready within {timeout:g} s (SAGEMAKER_STARTUP_TIMEOUT-like limit of "
                             f"--timeout); the log so far:\n{endpoint.logs()[-3000:]}")
        time.sleep(0.2)
