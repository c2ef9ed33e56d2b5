"""`python -m smserve_tensorflow.backend`: the built-in backend process.

It takes tensorflow_model_server's own flags, so smserve builds one argv for either backend (spec §3): the model
config file, ports, batching, parallelism and GPU fraction. It loads every configured model version before it
opens any port, then prints the real server's ready lines, serves REST on loopback (and gRPC when the gRPC service
module is present), and exits 0 on SIGTERM. A model that cannot be loaded stops it with status 1.
"""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before anything imports TensorFlow

from .servables import ModelConfig, ModelLoadError, ModelStore  # noqa: E402

USAGE_EXIT = 2


def log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------------------------
# Flags

_BOOLEAN_FLAGS = {"enable_batching", "enable_model_warmup", "rest_api_enable_cors_support"}
_INTEGER_FLAGS = {"port", "rest_api_port", "rest_api_num_threads", "rest_api_timeout_in_ms", "max_num_load_retries",
                  "load_retry_interval_micros", "file_system_poll_wait_seconds", "tensorflow_session_parallelism",
                  "tensorflow_intra_op_parallelism", "tensorflow_inter_op_parallelism",
                  "model_config_file_poll_wait_seconds"}
_FLOAT_FLAGS = {"per_process_gpu_memory_fraction"}
_STRING_FLAGS = {"model_config_file", "batching_parameters_file", "model_name", "model_base_path",
                 "monitoring_config_file", "grpc_socket_path", "smserve_local_socket"}


class UsageError(Exception):
    """A command line the real server would also refuse."""


@dataclass
class BatchingParameters:
    """The batching parameters file (`max_batch_size { value: 8 }` lines) as values; merging is the batcher's."""

    max_batch_size: int | None = None
    batch_timeout_micros: int | None = None
    num_batch_threads: int | None = None
    max_enqueued_batches: int | None = None
    other: dict[str, Any] = field(default_factory=dict)

    _ENTRY = re.compile(r'(\w+)\s*\{\s*value\s*:\s*("(?:[^"\\]|\\.)*"|[^\s}]+)\s*\}|(\w+)\s*:\s*([^\s{}]+)')

    @classmethod
    def parse(cls, text: str) -> BatchingParameters:
        parameters = cls()
        for match in cls._ENTRY.finditer(text):
            key = match.group(1) or match.group(3)
            raw = match.group(2) if match.group(1) else match.group(4)
            value = _scalar(raw)
            if key in ("max_batch_size", "batch_timeout_micros", "num_batch_threads", "max_enqueued_batches"):
                setattr(parameters, key, int(value))
            elif key == "allowed_batch_sizes":
                parameters.other.setdefault(key, []).append(int(value))
            else:
                parameters.other[key] = value
        return parameters

    def resolved(self) -> BatchingParameters:
        """Missing entries take TF Serving's batch scheduler defaults, so a batcher always gets four numbers."""
        return BatchingParameters(
            max_batch_size=1000 if self.max_batch_size is None else self.max_batch_size,
            batch_timeout_micros=0 if self.batch_timeout_micros is None else self.batch_timeout_micros,
            num_batch_threads=(os.cpu_count() or 1) if self.num_batch_threads is None else self.num_batch_threads,
            max_enqueued_batches=10 if self.max_enqueued_batches is None else self.max_enqueued_batches,
            other=dict(self.other))


def _scalar(raw: str) -> Any:
    if raw.startswith('"'):
        return raw[1:-1]
    lowered = raw.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return int(raw)
    except ValueError:
        try:
            return float(raw)
        except ValueError:
            return raw


@dataclass
class BackendOptions:
    """The parsed command line."""

    port: int = 8500
    rest_api_port: int = 0
    rest_api_num_threads: int = 0
    model_config_file: str = ""
    model_name: str = "default"
    model_base_path: str = ""
    max_num_load_retries: int = 5
    enable_batching: bool = False
    batching_parameters_file: str = ""
    batching: BatchingParameters | None = None
    tensorflow_intra_op_parallelism: int = 0
    tensorflow_inter_op_parallelism: int = 0
    tensorflow_session_parallelism: int = 0
    per_process_gpu_memory_fraction: float = 0.0
    smserve_local_socket: str = ""
    ignored: dict[str, str] = field(default_factory=dict)


def _boolean(name: str, text: str) -> bool:
    lowered = text.lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise UsageError(f"invalid value for --{name}: {text!r} (expected true or false)")


def parse_arguments(argv: Sequence[str]) -> BackendOptions:
    """tensorflow::Flags syntax: `--name=value`; a boolean flag alone means true."""
    options = BackendOptions()
    for argument in argv:
        if not argument.startswith("--"):
            raise UsageError(f"unknown argument: {argument}")
        name, has_value, value = argument[2:].partition("=")
        if name in _BOOLEAN_FLAGS:
            parsed: Any = _boolean(name, value) if has_value else True
        elif not has_value:
            raise UsageError(f"flag --{name} needs a value (--{name}=...)" if name in _INTEGER_FLAGS | _FLOAT_FLAGS
                             | _STRING_FLAGS else f"unknown command line flag '{name}'")
        elif name in _INTEGER_FLAGS:
            try:
                parsed = int(value)
            except ValueError:
                raise UsageError(f"invalid value for --{name}: {value!r} (expected an integer)") from None
        elif name in _FLOAT_FLAGS:
            try:
                parsed = float(value)
            except ValueError:
                raise UsageError(f"invalid value for --{name}: {value!r} (expected a number)") from None
        elif name in _STRING_FLAGS:
            parsed = value
        else:
            raise UsageError(f"unknown command line flag '{name}'")
        if hasattr(options, name):
            setattr(options, name, parsed)
        else:
            options.ignored[name] = value
    if options.enable_batching and options.batching_parameters_file:
        try:
            with open(options.batching_parameters_file, encoding="utf-8") as handle:
                options.batching = BatchingParameters.parse(handle.read())
        except OSError as error:
            raise UsageError(f"cannot read --batching_parameters_file: {error}") from None
    elif options.enable_batching:
        options.batching = BatchingParameters()
    return options


def read_model_config(options: BackendOptions) -> list[ModelConfig]:
    """Models from the text-format ModelServerConfig (or --model_name/--model_base_path, as the real server)."""
    if not options.model_config_file:
        if not options.model_base_path:
            raise UsageError("either --model_config_file or --model_base_path must be given")
        return [ModelConfig(name=options.model_name, base_path=options.model_base_path)]
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    config = model_server_config_pb2.ModelServerConfig()
    try:
        with open(options.model_config_file, encoding="utf-8") as handle:
            text_format.Parse(handle.read(), config)
    except (OSError, text_format.ParseError) as error:
        raise UsageError(f"cannot read --model_config_file {options.model_config_file}: {error}") from None
    models = []
    for entry in config.model_config_list.config:
        platform = entry.model_platform or "tensorflow"
        if platform != "tensorflow":
            raise UsageError(f"model {entry.name}: model_platform {platform!r} is not supported (only tensorflow)")
        policy = entry.model_version_policy
        which = policy.WhichOneof("policy_choice")
        if which == "specific":
            models.append(ModelConfig(entry.name, entry.base_path, versions=tuple(policy.specific.versions)))
        elif which == "all":
            models.append(ModelConfig(entry.name, entry.base_path, serve_all=True))
        elif which == "latest":
            models.append(ModelConfig(entry.name, entry.base_path, latest_count=policy.latest.num_versions or 1))
        else:
            models.append(ModelConfig(entry.name, entry.base_path))
    if not models:
        raise UsageError(f"--model_config_file {options.model_config_file} lists no models")
    return models


# ----------------------------------------------------------------------------------------------------------------
# TensorFlow runtime settings (before any model is loaded)

def _gpu_total_megabytes() -> list[int]:
    try:
        output = subprocess.run(["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
                                capture_output=True, text=True, timeout=20, check=True).stdout
        return [int(float(line)) for line in output.split() if line.strip()]
    except (OSError, subprocess.SubprocessError, ValueError):
        return []


def configure_tensorflow(options: BackendOptions) -> None:
    """Thread pools and GPU memory can only be set before TensorFlow initialises, i.e. before the first load."""
    import tensorflow as tf

    if options.tensorflow_intra_op_parallelism > 0:
        tf.config.threading.set_intra_op_parallelism_threads(options.tensorflow_intra_op_parallelism)
    if options.tensorflow_inter_op_parallelism > 0:
        tf.config.threading.set_inter_op_parallelism_threads(options.tensorflow_inter_op_parallelism)
    gpus = tf.config.list_physical_devices("GPU")
    fraction = options.per_process_gpu_memory_fraction
    if gpus and 0 < fraction < 1:
        totals = _gpu_total_megabytes()
        for index, gpu in enumerate(gpus):
            if index < len(totals):
                limit = int(totals[index] * fraction)
                tf.config.set_logical_device_configuration(
                    gpu, [tf.config.LogicalDeviceConfiguration(memory_limit=limit)])
                log(f"GPU {index}: memory limit {limit} MB ({fraction} of {totals[index]} MB)")
            else:
                tf.config.experimental.set_memory_growth(gpu, True)


# ----------------------------------------------------------------------------------------------------------------
# Serving

def _optional_module(name: str) -> Any | None:
    """A sibling module written by someone else; absent is fine, broken is not hidden."""
    qualified = f"{__package__}.{name}"
    if importlib.util.find_spec(qualified) is None:
        return None
    return importlib.import_module(qualified)


class _Shutdown(BaseException):
    """SIGTERM/SIGINT: unwinds through model loading and serving without being mistaken for a failure."""


def _exit_on_signal(signum: int, frame: Any) -> None:
    raise _Shutdown


def _bind_loopback(port: int) -> socket.socket:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(("127.0.0.1", port))
        listener.listen(2048)
    except OSError as error:
        listener.close()
        raise OSError(error.errno, f"cannot serve REST on 127.0.0.1:{port}: {error.strerror}") from None
    listener.set_inheritable(True)
    return listener


def serve(options: BackendOptions) -> int:
    """Load everything first, as TF Serving does, so an open port always means every version is AVAILABLE."""
    models = read_model_config(options)
    configure_tensorflow(options)
    try:
        store = ModelStore.from_config(models)
        store.load_all()
    except ModelLoadError as error:
        log(f"error: {error}")
        return 1
    for model in models:
        for entry in reversed(store.status(model.name)["model_version_status"]):
            log(f"Successfully loaded servable version {{name: {model.name} version: {entry['version']}}}")

    from .rest import RestApi

    batcher = _start_batcher(options)
    api = RestApi(store, run_predict=batcher.run_predict if batcher is not None else None)
    grpc_server = None
    grpc_module = _optional_module("grpc_service")
    if grpc_module is not None:
        extra = {"batcher": batcher} if batcher is not None else {}
        grpc_server = grpc_module.start_grpc(store, options.port, **extra)
        log(f"Running gRPC ModelServer at 0.0.0.0:{getattr(grpc_server, 'smserve_port', options.port)} ...")
    else:
        log(f"warning: gRPC is not served by this build (no grpc_service module); --port={options.port} unused")

    if options.smserve_local_socket:
        channel_module = _optional_module("channel")
        if channel_module is None:
            log("warning: --smserve_local_socket given but this build has no local channel module; ignored")
        else:
            channel_module.serve_local(options.smserve_local_socket, api.handle)

    try:
        if options.rest_api_port:
            _serve_rest(api, options)
        else:
            while True:
                signal.pause()  # until SIGTERM/SIGINT raise _Shutdown
    finally:
        log(f"backend served {api.inference_requests} inference requests over REST and the local channel")
        if grpc_server is not None and hasattr(grpc_server, "stop"):
            grpc_server.stop(0)
        if batcher is not None:
            batcher.close()
    return 0


def _start_batcher(options: BackendOptions) -> Any | None:
    if not options.enable_batching:
        return None
    batching_module = _optional_module("batching")
    if batching_module is None:
        log("warning: --enable_batching=true but this build has no batching module; requests run one by one")
        return None
    parameters = (options.batching or BatchingParameters()).resolved()
    return batching_module.RequestBatcher(parameters)


def _serve_rest(api: Any, options: BackendOptions) -> None:
    import uvicorn

    from .http import create_app

    listener = _bind_loopback(options.rest_api_port)
    app = create_app(api, options.rest_api_num_threads or None)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", timeout_keep_alive=75,
                            backlog=2048)
    server = uvicorn.Server(config)
    log(f"Exporting HTTP/REST API at:localhost:{options.rest_api_port} ...")
    server.run(sockets=[listener])


def main(argv: Sequence[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGINT, _exit_on_signal)
    try:
        options = parse_arguments(sys.argv[1:] if argv is None else argv)
        return serve(options)
    except UsageError as error:
        log(f"error: {error}")
        return USAGE_EXIT
    except OSError as error:  # a port already taken, a socket path not writable
        log(f"error: {error}")
        return 1
    except _Shutdown:
        return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # skip TensorFlow's slow (and sometimes noisy) interpreter teardown
