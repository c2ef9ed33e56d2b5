"""The backend plan: which server runs the SavedModels, on which ports, with which flags (spec tensorflow.md §2,
§3, §10, §12, §13). Made once by the supervisor; the workers forked after it read the same plan to reach the
backends. The model server of one model of a multi-model endpoint serves that model alone, under the name it was
loaded as, on the ports its front set aside, and does not outlive its backends (§12).

Both backends take the same command line (the built-in one mimics `tensorflow_model_server`'s flags), so
everything here is the same for both except the executable and the built-in backend's local socket.
"""

from __future__ import annotations

import http.client
import itertools
import json
import logging
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from smserve.errors import StartupError
from smserve.sidecars import SidecarSpec

from . import discovery

log = logging.getLogger("smserve.tensorflow")
BINARY = "tensorflow_model_server"
DEFAULT_CONTEXT_TIMEOUT = 60.0  # context.timeout when SAGEMAKER_TFS_WAIT_TIME_SECONDS is unset [AWS]


@dataclass(frozen=True)
class BackendInstance:
    index: int
    grpc_port: int
    rest_port: int
    local_socket: str | None  # the built-in backend's local channel (backend/channel.py)


@dataclass
class BackendPlan:
    kind: str  # "builtin" or "tfs"
    models: tuple  # discovery.ServedModel
    default_model: str
    instances: tuple[BackendInstance, ...]
    argvs: tuple[tuple[str, ...], ...]
    envs: tuple[dict[str, str], ...]
    context_timeout: float
    local_channel: bool  # the front may use the local channel when it has no handler code
    wait_time: float | None  # SAGEMAKER_TFS_WAIT_TIME_SECONDS: bounds the backends' first load when set
    multi_model: bool = False  # one model of a multi-model endpoint: its backends are not restarted

    def sidecar_specs(self) -> tuple[SidecarSpec, ...]:
        return tuple(SidecarSpec(f"tfs-{i.index}", argv, _probe(i.rest_port, self.models), env,
                                 self.wait_time, "SAGEMAKER_TFS_WAIT_TIME_SECONDS", restart=not self.multi_model)
                     for i, argv, env in zip(self.instances, self.argvs, self.envs))


def _probe(rest_port: int, models: tuple):
    """Ready when every version of every model reports AVAILABLE on the REST port: both backends answer it."""
    def probe() -> bool:
        for model in models:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", rest_port, timeout=0.5)
                conn.request("GET", f"/v1/models/{model.name}")
                answer = conn.getresponse()
                body = answer.read()
                conn.close()
            except (OSError, http.client.HTTPException):
                return False
            if answer.status != 200:
                return False
            try:
                states = {str(v["version"]): v["state"] for v in json.loads(body)["model_version_status"]}
            except (ValueError, KeyError, TypeError):
                return False
            if any(states.get(str(version)) != "AVAILABLE" for version in model.versions):
                return False
        return True
    return probe


def _select(choice: str) -> tuple[str, list[str]]:
    binary = shutil.which(BINARY)
    if choice == "tfs" and binary is None:
        raise StartupError(f"SMSERVE_TF_BACKEND=tfs but no {BINARY} is on PATH: install the binary in the image "
                           f"(images.md: build with a tensorflow_model_server binary) or set SMSERVE_TF_BACKEND=auto")
    if choice == "tfs" or (choice == "auto" and binary is not None):
        log.info("backend: %s (%s)", binary, "SMSERVE_TF_BACKEND=tfs" if choice == "tfs" else "found on PATH")
        return "tfs", [binary]
    reason = "SMSERVE_TF_BACKEND=builtin" if choice == "builtin" else f"no {BINARY} on PATH"
    log.info("backend: built-in (TensorFlow runtime, smserve_tensorflow.backend; %s)", reason)
    return "builtin", [sys.executable, "-m", "smserve_tensorflow.backend"]


def plan_backends(settings, layout, run_dir: Path, gpu_count: int = 0) -> BackendPlan:
    options = settings.family_options
    multi_model = settings.unix_socket is not None  # the model server of one model of a multi-model endpoint
    if multi_model:  # its front checked the layout (multi_model.py) and logged what there was to say about it
        models = (discovery.multi_model_served(layout.model_dir, settings.served_model_name),)
        default_model = settings.served_model_name
    else:
        found = discovery.discover(layout.model_dir)
        for warning in found.warnings:
            log.warning("%s", warning)
        models = found.models
        default_model, warning = discovery.choose_default_model(models, options["SAGEMAKER_TFS_DEFAULT_MODEL_NAME"])
        if warning:
            log.warning("%s", warning)
    kind, executable = _select(options["SMSERVE_TF_BACKEND"])
    instances_ports = options["SMSERVE_TF_BACKEND_PORTS"] or \
        discovery.plan_instances(options["SAGEMAKER_TFS_INSTANCE_COUNT"], settings.safe_port_range)
    count = len(instances_ports)
    instances = tuple(BackendInstance(i, p.grpc_port, p.rest_port,
                                      str(run_dir / f"tfs-{i}.sock") if kind == "builtin" else None)
                      for i, p in enumerate(instances_ports))

    config_path = run_dir / "models.config"
    config_text = discovery.model_config_text(models)
    config_path.write_text(config_text)
    log.info("backend model config (%s):\n%s", config_path, config_text.rstrip())

    batching_path = None
    if options["SAGEMAKER_TFS_ENABLE_BATCHING"]:
        batching = discovery.parse_batching(
            "true", *(_text(options[f"SAGEMAKER_TFS_{key}"]) for key in
                      ("MAX_BATCH_SIZE", "BATCH_TIMEOUT_MICROS", "NUM_BATCH_THREADS", "MAX_ENQUEUED_BATCHES")),
            sagemaker_batch=settings.batch, cpu_count=os.cpu_count() or 1)
        text = discovery.batching_parameters_text(batching)
        batching_path = str(run_dir / "batching.config")
        Path(batching_path).write_text(text)
        for line in text.splitlines():  # each exactly once, in TF Serving's form (AWS's tests grep them)
            log.info("%s", line)
        defaulted = discovery.defaulted_warning(batching)
        if defaulted:
            log.warning("%s", defaulted)

    gpu_fraction = discovery.gpu_memory_fraction(count, options["SAGEMAKER_TFS_FRACTIONAL_GPU_MEM_MARGIN"]) \
        if gpu_count else None
    argvs, envs = [], []
    for instance, ports in zip(instances, instances_ports):
        argvs.append(tuple(discovery.backend_argv(
            executable, ports, str(config_path), batching_path,
            options["SAGEMAKER_TFS_INTRA_OP_PARALLELISM"], options["SAGEMAKER_TFS_INTER_OP_PARALLELISM"],
            gpu_fraction, instance.local_socket)))
        env = {"TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
        gpu = discovery.instance_gpu(instance.index, gpu_count)
        if gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = str(gpu)
        envs.append(env)

    # the AWS hand-off that handler scripts may read (tensorflow.md §11)
    os.environ["TFS_GRPC_PORTS"] = ",".join(str(i.grpc_port) for i in instances)
    os.environ["TFS_REST_PORTS"] = ",".join(str(i.rest_port) for i in instances)
    os.environ["TFS_DEFAULT_MODEL_NAME"] = default_model
    wait = options["SAGEMAKER_TFS_WAIT_TIME_SECONDS"]
    return BackendPlan(kind, models, default_model, instances, tuple(argvs), tuple(envs),
                       DEFAULT_CONTEXT_TIMEOUT if wait is None else wait,
                       kind == "builtin" and options["SMSERVE_TF_LOCAL_CHANNEL"],
                       None if multi_model else wait,  # a model's load is bounded by its front (408)
                       multi_model)


def _text(value) -> str | None:
    return None if value is None else str(value)


class RoundRobin:
    """Spreads requests over the instances; thread-safe enough (itertools.count is atomic under the GIL)."""

    def __init__(self, items: tuple):
        self._items = items
        self._counter = itertools.count()

    def next(self):
        return self._items[next(self._counter) % len(self._items)]
