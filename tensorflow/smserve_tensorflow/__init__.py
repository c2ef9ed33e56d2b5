"""The TensorFlow Serving family (spec tensorflow.md): its declaration for the core.

Models run in backend processes that speak TF Serving's REST and gRPC APIs: the real `tensorflow_model_server`
when the image has one, else smserve's built-in backend (`smserve_tensorflow.backend`, the TensorFlow runtime).
The supervisor runs them as sidecars (smserve/sidecars.py). Workers are the front: they run the user's
`input_handler`/`output_handler` (or `handler`), or convert requests by AWS's default rules, and never import
TensorFlow, so they start in a fraction of the backend's time and cost little memory. On a multi-model endpoint
each loaded model gets a model server of its own with its own backends (tensorflow.md §12, multi_model.py).
"""

from __future__ import annotations

from smserve.config import parse_bool, parse_int, parse_seconds
from smserve.errors import ConfigError
from smserve.families import Family, FamilyEnv, FamilyOption

from .discovery import Instance, parse_backend_ports

BACKENDS = ("auto", "builtin", "tfs")


def _backend(name: str, value: str) -> str:
    word = value.strip().lower()
    if word not in BACKENDS:
        raise ConfigError(name, value, " or ".join(BACKENDS))
    return word


def _strict_bool(name: str, value: str) -> bool:
    """`true`/`false` in any case and nothing else: AWS's image refuses other words for batching."""
    word = value.strip().lower()
    if word not in ("true", "false"):
        raise ConfigError(name, value, "true or false")
    return word == "true"


def _count(name: str, value: str) -> int:
    return parse_int(name, value, 1)


def _threads(name: str, value: str) -> int:
    return parse_int(name, value, 0)


def _fraction(name: str, value: str) -> float:
    try:
        number = float(value.strip())
    except ValueError:
        number = -1.0
    if not 0.0 <= number < 1.0:
        raise ConfigError(name, value, "a fraction 0 <= margin < 1, e.g. 0.2")
    return number


def _backend_ports(name: str, value: str) -> tuple[Instance, ...]:
    try:
        return parse_backend_ports(value)
    except ValueError:
        raise ConfigError(name, value, "<rest port>:<grpc port> per backend, comma-separated") from None


def _model_name(name: str, value: str) -> str | None:
    value = value.strip()
    return None if value == "None" else value  # AWS's unset marker


class TensorFlowFamily(Family):
    name = "tensorflow"
    display_name = "TensorFlow Serving"
    framework_distribution = "tensorflow-cpu"
    expected_files = "a SavedModel: <model name>/<version number>/saved_model.pb, e.g. half_plus_three/00000123/"
    descend_single_directory = False  # the model's own directory is part of the layout (its name is the model's)
    requirements_skipped_with_lib = True
    footprint_mb = 60  # a front worker: no TensorFlow
    preload_modules = ("requests", "smserve_tensorflow.front")
    env = FamilyEnv(
        legacy_prefix="",
        preferred_worker_vars=("SAGEMAKER_GUNICORN_WORKERS",),
        thread_vars=("SAGEMAKER_GUNICORN_THREADS",),
        default_worker_threads=4,
        timeout_vars=("SAGEMAKER_GUNICORN_TIMEOUT_SECONDS", "SAGEMAKER_NGINX_PROXY_READ_TIMEOUT_SECONDS"),
        informational_vars=("SAGEMAKER_GUNICORN_WORKER_CLASS", "SAGEMAKER_GUNICORN_LOGLEVEL",
                            "SAGEMAKER_TFS_NGINX_LOGLEVEL", "SAGEMAKER_TFS_VERSION"),
        options=(
            FamilyOption("SMSERVE_TF_BACKEND", _backend, "auto",
                         "tensorflow_model_server when on PATH (auto), the built-in backend (builtin), or require "
                         "the binary (tfs)"),
            FamilyOption("SMSERVE_TF_LOCAL_CHANNEL", parse_bool, True,
                         "without handler code, reach the built-in backend over its local socket instead of HTTP"),
            FamilyOption("SMSERVE_TF_BACKEND_PORTS", _backend_ports, None,
                         "set by the multi-model front for a model's server: its backends' ports"),
            FamilyOption("SAGEMAKER_TFS_DEFAULT_MODEL_NAME", _model_name, None, "the model requests go to"),
            FamilyOption("SAGEMAKER_TFS_INSTANCE_COUNT", _count, 1, "backend processes; requests round-robin"),
            FamilyOption("SAGEMAKER_TFS_WAIT_TIME_SECONDS", parse_seconds, None,
                         "model-ready wait and context.timeout (60 when unset)"),
            FamilyOption("SAGEMAKER_TFS_INTRA_OP_PARALLELISM", _threads, 0, "backend intra-op threads (0: TF's)"),
            FamilyOption("SAGEMAKER_TFS_INTER_OP_PARALLELISM", _threads, 0, "backend inter-op threads (0: TF's)"),
            FamilyOption("SAGEMAKER_TFS_FRACTIONAL_GPU_MEM_MARGIN", _fraction, 0.2,
                         "GPU memory kept free when several backends share a GPU"),
            FamilyOption("SAGEMAKER_TFS_ENABLE_BATCHING", _strict_bool, False, "merge concurrent row requests"),
            FamilyOption("SAGEMAKER_TFS_MAX_BATCH_SIZE", _count, None, "max_batch_size (8)"),
            FamilyOption("SAGEMAKER_TFS_BATCH_TIMEOUT_MICROS", _count, None, "batch_timeout_micros (1000)"),
            FamilyOption("SAGEMAKER_TFS_NUM_BATCH_THREADS", _count, None, "num_batch_threads (CPU count)"),
            FamilyOption("SAGEMAKER_TFS_MAX_ENQUEUED_BATCHES", _count, None,
                         "max_enqueued_batches (CPU count; 100000000 with SAGEMAKER_BATCH)"),
        ),
    )

    def __init__(self) -> None:
        self.backends = None  # planned by sidecars() in the supervisor, inherited by the forked workers

    def sidecars(self, settings, layout, plan, run_dir):
        from .backends import plan_backends

        self.backends = plan_backends(settings, layout, run_dir, len(plan.gpus))
        return self.backends.sidecar_specs()

    def mme_dialect(self, settings):
        from .multi_model import TensorFlowDialect

        return TensorFlowDialect(self, settings)

    def create_handler(self, settings, worker, module, observe, metrics_sink, warn, observe_batch=None):
        from .front import FrontHandler

        return FrontHandler(settings, self.backends, module, warn)
