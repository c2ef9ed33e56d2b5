"""The one place that reads environment variables (spec core §12).

Everything else receives a frozen `Settings`. Invalid values raise `ConfigError`, which the CLI
turns into exit status 2 with one line naming the variable, the value and the accepted forms.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from . import neuron
from .errors import ConfigError, NeuronCoreError
from .families import FamilyEnv, resolve_family

TRUE_WORDS = {"true", "1", "yes"}
FALSE_WORDS = {"false", "0", "no"}
BOOL_FORMS = "true/false, 1/0, yes/no"

DEFAULT_PAYLOAD_BYTES = 6_553_500
DEFAULT_TIMEOUT = 60.0
DEFAULT_BATCH_TIMEOUT = 600.0
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


# ---------------------------------------------------------------- parsers

def parse_bool(name: str, value: str) -> bool:
    word = value.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ConfigError(name, value, BOOL_FORMS)


def parse_int(name: str, value: str, minimum: int = 0) -> int:
    try:
        number = int(value.strip())
    except ValueError:
        raise ConfigError(name, value, f"an integer >= {minimum}") from None
    if number < minimum:
        raise ConfigError(name, value, f"an integer >= {minimum}")
    return number


def parse_seconds(name: str, value: str) -> float:
    try:
        number = float(value.strip())
    except ValueError:
        raise ConfigError(name, value, "a positive number of seconds (fractions allowed)") from None
    if not number > 0 or number != number or number == float("inf"):
        raise ConfigError(name, value, "a positive number of seconds (fractions allowed)")
    return number


def parse_milliseconds(name: str, value: str) -> float:
    """A delay in milliseconds, 0 allowed, at most a minute."""
    try:
        number = float(value.strip())
    except ValueError:
        raise ConfigError(name, value, "milliseconds, 0-60000 (fractions allowed)") from None
    if not 0 <= number <= 60000:
        raise ConfigError(name, value, "milliseconds, 0-60000 (fractions allowed)")
    return number


def parse_port(name: str, value: str) -> int:
    port = parse_int(name, value, 1)
    if port > 65535:
        raise ConfigError(name, value, "a port number 1-65535")
    return port


def parse_port_range(name: str, value: str) -> tuple[int, int]:
    accepted = "lo-hi with 1 <= lo <= hi <= 65535 (also lo:hi)"
    parts = value.replace(":", "-").split("-")
    try:
        low, high = (int(p) for p in parts)
    except ValueError:
        raise ConfigError(name, value, accepted) from None
    if not 1 <= low <= high <= 65535:
        raise ConfigError(name, value, accepted)
    return low, high


def parse_group_sizes(name: str, value: str) -> int:
    """NEURONCORE_GROUP_SIZES -> the NeuronCores one process claims: `2`, a list `2,2` or `[1,2,1]` (one group
    per entry), or `AxB` (A groups of B cores, tensorflow-neuron's replication form); entries may mix forms."""
    accepted = "NeuronCore group sizes: an integer >= 1, a list such as 2,2 or [1,2,1], or AxB (4x1: 4 groups of 1)"
    text = value.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    total = 0
    for item in text.split(","):
        count, times, size = item.strip().lower().partition("x")
        try:
            groups, cores = (int(count), int(size)) if times else (1, int(count))
        except ValueError:
            raise ConfigError(name, value, accepted) from None
        if groups < 1 or cores < 1:
            raise ConfigError(name, value, accepted)
        total += groups * cores
    return total


def parse_choice(name: str, value: str, choices: tuple[str, ...], lower: bool = True) -> str:
    word = value.strip().lower() if lower else value.strip().upper()
    if word not in choices:
        raise ConfigError(name, value, " or ".join(choices))
    return word


# ---------------------------------------------------------------- settings

@dataclass(frozen=True)
class Sourced:
    """A value plus where it came from, for the startup summary ("workers=2 (SAGEMAKER_MODEL_SERVER_WORKERS)")."""

    value: Any
    source: str


@dataclass(frozen=True)
class NeuronSettings:
    """inf1 variants (neo.md §9.2): the NeuronCore arithmetic, resolved and checked at startup."""

    processes: int  # processes that each claim `cores_per_process` NeuronCores: the workers, or TF's backends
    process_kind: str  # "workers" or "TF Serving instances"
    processes_source: str  # "SAGEMAKER_MODEL_SERVER_WORKERS=8", "NEURON_CORE_HOST_TOTAL=4", ...
    cores_per_process: int  # 0: every NeuronCore of the instance (NEURON_RT_NUM_CORES=0)
    cores_source: str  # "NeuronCore group size 1 (NEURONCORE_GROUP_SIZES default 1)", ...
    host_cores: Sourced | None  # NeuronCores of this instance; None when unknown (no variable, no device)
    devices: tuple[str, ...]  # the /dev/neuron* nodes
    dev_dir: Path
    sysfs_root: Path  # where Inferentia PCI devices are counted (tests hand over a fake tree)
    exports: tuple[tuple[str, str], ...]  # the AWS entrypoint's defaults, exported to the workers and backends

    @property
    def demand(self) -> int:
        per = self.cores_per_process or (self.host_cores.value if self.host_cores else 0)
        return self.processes * per


# families whose NeuronCores are claimed by backend processes rather than by the workers:
# family -> (the option that counts them, what they are called)
NEURON_BACKENDS = {"tensorflow": ("SAGEMAKER_TFS_INSTANCE_COUNT", "TF Serving instances")}
INSTANCE_CORES_TEXT = ", ".join(f"{name} {cores}" for name, cores in neuron.INSTANCE_CORES.items())


@dataclass(frozen=True)
class MultiModelSettings:
    """Multi-model endpoints (spec core §13): where models may live, how many workers each gets, when a load
    must give way (507) or evict (LRU)."""

    models_root: Path  # <base>/models: load urls must lie inside it
    workers_per_model: int
    max_models: int  # 0: no cap
    min_free_memory_pct: float
    eviction: str  # "none" (507) or "lru"


@dataclass(frozen=True)
class Settings:
    family: str
    variant: str
    port: int
    host: str | None  # None: every interface (0.0.0.0 and [::]) as SageMaker requires; --host for local runs
    safe_port_range: tuple[int, int] | None
    base_dir: Path
    model_dir: Path
    multi_model: bool
    program: str
    program_explicit: bool
    submit_directory: str | None
    log_level: int
    log_format: str
    access_log: bool
    log_ping: bool
    debug: bool
    metrics: bool
    workers: Sourced | None  # None: derive from CPUs/GPUs (spec core §15)
    worker_threads: int  # predict threads per worker (at least 2 x batch_size when batching)
    max_queue: int
    batch_size: int  # rows merged into one predict call (dynamic batching); 1: off
    batch_delay: float  # seconds the first request of a batch waits for more
    request_timeout: Sourced
    hung_grace: float
    startup_timeout: float
    graceful_timeout: float
    max_request_bytes: Sourced
    header_timeout: float  # seconds from a request's first byte to the end of its headers (408 after)
    idle_timeout: float  # seconds a connection may stay open with no request in progress
    max_header_bytes: int  # request line + headers (431 above)
    max_connections: int | None  # per worker; None: from the open-file limit (protocol.default_max_connections)
    decode_factor: int  # decoding a body may allocate at most this many times its size (codecs.decoded_bound)
    response_max_bytes: int
    default_accept: str
    batch: bool
    batch_strategy: str | None
    max_concurrent_transforms: int | None
    max_payload_mb: int | None
    skip_requirements: bool
    preload_framework: bool  # import the framework once in the zygote and fork workers from it
    model_load_retries: int
    gpu_pinning: bool
    ca_repository_arn: str | None
    cuda_visible_devices: str | None
    user_thread_vars: frozenset[str]  # OMP/MKL/OPENBLAS variables the user set (respected)
    notices: tuple[tuple[int, str], ...] = ()  # (log level, text) about accepted-but-ignored variables
    family_options: Mapping[str, Any] = field(default_factory=dict)
    region: str | None = None
    neuron: NeuronSettings | None = None  # inf1 variants only
    mme: MultiModelSettings | None = None  # SAGEMAKER_MULTI_MODEL=true only
    unix_socket: Path | None = None  # a model server of a multi-model endpoint listens here, not on the port
    served_model_name: str = "model"  # the name a multi-model endpoint loaded this model server under
    requirements_cache: Path | None = None  # a multi-model endpoint's shared, content-keyed requirements overlays


THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def _first(env: Mapping[str, str], names: tuple[str, ...]) -> tuple[str, str] | None:
    for name in names:
        value = env.get(name)
        if value is not None and value.strip() != "":
            return name, value
    return None


def _neuron_settings(env: Mapping[str, str], family: str, workers: Sourced | None,
                     family_options: Mapping[str, Any], dev_dir: Path,
                     sysfs_root: Path) -> tuple[NeuronSettings, Sourced]:
    """The inf1 defaults of AWS's entrypoint (neo.md §9.2) and the NeuronCore check [smserve improvement]:
    (the Neuron settings, the worker count with its inf1 default applied)."""
    group_raw = (env.get("NEURONCORE_GROUP_SIZES") or "").strip()
    group_total = parse_group_sizes("NEURONCORE_GROUP_SIZES", group_raw) if group_raw else 1
    group_text = f"NEURONCORE_GROUP_SIZES={group_raw}" if group_raw else "NEURONCORE_GROUP_SIZES default 1"
    exports = [("NEURONCORE_GROUP_SIZES", group_raw or "1")]

    devices = neuron.neuron_devices(dev_dir)
    host_raw = (env.get("NEURON_CORE_HOST_TOTAL") or "").strip()
    if host_raw:
        host = Sourced(parse_int("NEURON_CORE_HOST_TOTAL", host_raw, 1), f"NEURON_CORE_HOST_TOTAL={host_raw}")
    elif devices:
        host = Sourced(len(devices) * neuron.CORES_PER_DEVICE,
                       f"{len(devices)} {dev_dir}/neuron* device(s) x {neuron.CORES_PER_DEVICE} NeuronCores")
    else:
        host = None
    defaulted = workers is None
    if defaulted:  # [AWS] one worker per NeuronCore of the host when the platform says how many
        workers = (Sourced(host.value, "NEURON_CORE_HOST_TOTAL") if host_raw
                   else Sourced(1, "NEURON_CORE_HOST_TOTAL unset, inf1 default SAGEMAKER_MODEL_SERVER_WORKERS"))

    backend = NEURON_BACKENDS.get(family)
    if backend:  # TF: each backend process claims NEURON_RT_NUM_CORES, defaulting to the group sizes [AWS]
        variable, kind = backend
        rt_raw = (env.get("NEURON_RT_NUM_CORES") or "").strip()
        if rt_raw:
            per = parse_int("NEURON_RT_NUM_CORES", rt_raw, 0)
            per_text = f"NEURON_RT_NUM_CORES {per} (NEURON_RT_NUM_CORES={rt_raw}" + \
                (", every NeuronCore of the instance)" if per == 0 else ")")
        else:
            per, rt_raw = group_total, str(group_total)
            per_text = f"NEURON_RT_NUM_CORES {per} (from {group_text})"
        exports.append(("NEURON_RT_NUM_CORES", rt_raw))
        processes = int(family_options.get(variable) or 1)
        source = f"{variable}={processes}" if (env.get(variable) or "").strip() else f"{variable} default 1"
        knob = variable
    else:
        per, kind = group_total, "workers"
        per_text = (f"NeuronCore group size {per} ({group_text})" if group_raw.isdigit() or not group_raw
                    else f"{per} NeuronCores per worker ({group_text})")
        processes = workers.value
        source = f"{workers.source}={workers.value}"
        knob = "SAGEMAKER_MODEL_SERVER_WORKERS" if defaulted else workers.source
    settings = NeuronSettings(processes, kind, source, per, per_text, host, devices, dev_dir, sysfs_root,
                              tuple(exports))

    if host is not None and settings.demand > host.value:
        per_cores = per or host.value
        fit = host.value // per_cores
        if fit >= 1:
            fix = f"set {knob} to at most {fit}, or lower the NeuronCores per process"
        else:
            fix = f"lower the NeuronCores per process to at most {host.value}"
        raise NeuronCoreError(
            knob, str(processes),
            f"inf1: {processes} {kind} x {per_text} = {settings.demand} NeuronCores, but this instance has "
            f"{host.value} ({host.source}; {kind} from {source}). A NeuronCore serves one process: {fix} "
            f"({'NEURON_RT_NUM_CORES or ' if backend else ''}NEURONCORE_GROUP_SIZES), or use an instance with more "
            f"NeuronCores ({INSTANCE_CORES_TEXT})")
    return settings, workers


def load_settings(env: Mapping[str, str] | None = None, *, family: str | None = None,
                  model_dir: str | None = None, port: int | None = None, host: str | None = None,
                  dev_dir: Path = Path("/dev"), sysfs_root: Path = Path("/sys")) -> Settings:
    """Read and validate every variable; CLI options (model_dir, port, family) win over the environment.
    `dev_dir` and `sysfs_root` are where inf1 variants look for Neuron devices (tests pass fake trees)."""
    env = dict(os.environ if env is None else env)
    fam = resolve_family(family or env.get("SMSERVE_FAMILY") or None,
                         "--family" if family else "SMSERVE_FAMILY")
    fenv: FamilyEnv = fam.env
    variant = env.get("SMSERVE_VARIANT", "cpu")

    def legacy(suffix: str) -> tuple[str, ...]:
        """The family's model-server alias of a variable (TS_/MMS_...), if the family has one. The inf1
        variants also honour MMS_* where the family reads TS_* (AWS's inf1 entrypoint renames them)."""
        names = (f"{fenv.legacy_prefix}_{suffix}",) if fenv.legacy_prefix else ()
        if variant == "inf1" and fenv.legacy_prefix == "TS":
            names += (f"MMS_{suffix}",)
        return names

    notices: list[tuple[int, str]] = []

    def boolean(name: str, default: bool) -> bool:
        value = env.get(name)
        return default if value is None or value.strip() == "" else parse_bool(name, value)

    def integer(name: str, default: int, minimum: int = 0) -> int:
        value = env.get(name)
        return default if value is None or value.strip() == "" else parse_int(name, value, minimum)

    def seconds(name: str, default: float) -> float:
        value = env.get(name)
        return default if value is None or value.strip() == "" else parse_seconds(name, value)

    multi_value = env.get("SAGEMAKER_MULTI_MODEL") or "false"
    multi_model = parse_choice("SAGEMAKER_MULTI_MODEL", multi_value, ("true", "false")) == "true"

    if port is None:
        port = parse_port("SAGEMAKER_BIND_TO_PORT", env.get("SAGEMAKER_BIND_TO_PORT") or "8080")
    safe_range = env.get("SAGEMAKER_SAFE_PORT_RANGE")
    safe_port_range = parse_port_range("SAGEMAKER_SAFE_PORT_RANGE", safe_range) if safe_range else None

    base_dir = Path(env.get("SAGEMAKER_BASE_DIR") or "/opt/ml")
    mme = None
    if multi_model:
        pct_raw = (env.get("SMSERVE_MME_MIN_FREE_MEMORY_PCT") or "10").strip()
        try:
            pct = float(pct_raw)
        except ValueError:
            pct = -1.0
        if not 0 <= pct < 100:
            raise ConfigError("SMSERVE_MME_MIN_FREE_MEMORY_PCT", pct_raw, "a percentage from 0 to 99")
        mme = MultiModelSettings(
            models_root=Path(env.get("SMSERVE_MME_MODELS_ROOT") or base_dir / "models"),
            workers_per_model=integer("SMSERVE_MME_WORKERS_PER_MODEL", 1, 1),
            max_models=integer("SMSERVE_MME_MAX_MODELS", 0, 0),
            min_free_memory_pct=pct,
            eviction=parse_choice("SMSERVE_MME_EVICTION", env.get("SMSERVE_MME_EVICTION") or "none",
                                  ("none", "lru")))
    resolved_model_dir = Path(model_dir) if model_dir else base_dir / "model"

    program_raw = env.get("SAGEMAKER_PROGRAM")
    program_explicit = bool(program_raw and program_raw.strip())
    program = program_raw.strip() if program_explicit else "inference.py"

    if env.get("SMSERVE_LOG_LEVEL"):
        level_name = parse_choice("SMSERVE_LOG_LEVEL", env["SMSERVE_LOG_LEVEL"], LOG_LEVELS, lower=False)
        log_level = logging.getLevelName(level_name)
    elif env.get("SAGEMAKER_CONTAINER_LOG_LEVEL"):
        log_level = parse_int("SAGEMAKER_CONTAINER_LOG_LEVEL", env["SAGEMAKER_CONTAINER_LOG_LEVEL"], 0)
    else:
        log_level = logging.INFO
    log_format = parse_choice("SMSERVE_LOG_FORMAT", env.get("SMSERVE_LOG_FORMAT") or "text", ("text", "json"))

    workers_hit = _first(env, (*fenv.preferred_worker_vars, "SAGEMAKER_MODEL_SERVER_WORKERS",
                               *legacy("DEFAULT_WORKERS_PER_MODEL"), *fenv.worker_vars))
    workers = Sourced(parse_int(workers_hit[0], workers_hit[1], 1), workers_hit[0]) if workers_hit else None

    batch = boolean("SAGEMAKER_BATCH", False)
    timeout_hit = _first(env, ("SAGEMAKER_MODEL_SERVER_TIMEOUT_SECONDS", "SAGEMAKER_MODEL_SERVER_TIMEOUT",
                               *legacy("DEFAULT_RESPONSE_TIMEOUT")))
    family_timeouts = [(parse_seconds(name, env[name]), name) for name in fenv.timeout_vars
                       if env.get(name) and env[name].strip()]
    if timeout_hit:
        request_timeout = Sourced(parse_seconds(*timeout_hit), timeout_hit[0])
    elif family_timeouts:
        request_timeout = Sourced(*max(family_timeouts))
    elif batch:
        request_timeout = Sourced(DEFAULT_BATCH_TIMEOUT, "default for SAGEMAKER_BATCH")
    else:
        request_timeout = Sourced(DEFAULT_TIMEOUT, "default")

    max_payload_mb = None
    if env.get("SAGEMAKER_MAX_PAYLOAD_IN_MB", "").strip():
        max_payload_mb = parse_int("SAGEMAKER_MAX_PAYLOAD_IN_MB", env["SAGEMAKER_MAX_PAYLOAD_IN_MB"], 1)
        max_request = Sourced(max_payload_mb * 1_048_576, "SAGEMAKER_MAX_PAYLOAD_IN_MB")
    else:
        hit = _first(env, legacy("MAX_REQUEST_SIZE"))
        max_request = (Sourced(parse_int(hit[0], hit[1], 1), hit[0]) if hit
                       else Sourced(DEFAULT_PAYLOAD_BYTES, "default; set SAGEMAKER_MAX_PAYLOAD_IN_MB to raise it"))

    response_hit = _first(env, ("SMSERVE_RESPONSE_MAX_BYTES", *legacy("MAX_RESPONSE_SIZE")))
    response_max = parse_int(response_hit[0], response_hit[1], 0) if response_hit else 0

    graceful = seconds("SMSERVE_GRACEFUL_TIMEOUT", 25.0)
    if graceful >= 30:
        raise ConfigError("SMSERVE_GRACEFUL_TIMEOUT", env["SMSERVE_GRACEFUL_TIMEOUT"],
                          "seconds below 30 (the platform sends SIGKILL 30 s after SIGTERM)")

    strategy = env.get("SAGEMAKER_BATCH_STRATEGY")
    if strategy:
        strategy = parse_choice("SAGEMAKER_BATCH_STRATEGY", strategy, ("SINGLE_RECORD", "MULTI_RECORD"), lower=False)
    concurrent = env.get("SAGEMAKER_MAX_CONCURRENT_TRANSFORMS")

    if env.get("SAGEMAKER_MODEL_SERVER_VMARGS"):
        notices.append((logging.INFO, "SAGEMAKER_MODEL_SERVER_VMARGS is ignored: smserve runs no JVM"))
    if env.get("SAGEMAKER_INFERENCE_ACCELERATOR_PRESENT", "").strip().lower() in TRUE_WORDS:
        notices.append((logging.WARNING, "SAGEMAKER_INFERENCE_ACCELERATOR_PRESENT=true: Elastic Inference is "
                                         "retired and not supported; serving on the normal device"))
    for name in fenv.informational_vars:
        if env.get(name):
            notices.append((logging.INFO, f"{name}={env[name]} accepted; it does not change how smserve serves"))

    # dynamic batching (batching.py): each waiting request holds a predict thread, and the next batch decodes
    # while one runs, so the worker gets at least two batches' worth of predict threads
    batch_size = integer("SMSERVE_BATCH_SIZE", 1, 1)
    batch_delay_ms = parse_milliseconds("SMSERVE_BATCH_DELAY_MS", env.get("SMSERVE_BATCH_DELAY_MS") or "5")
    threads_hit = _first(env, (*fenv.thread_vars, "SMSERVE_WORKER_THREADS"))
    worker_threads = requested_threads = \
        parse_int(threads_hit[0], threads_hit[1], 1) if threads_hit else fenv.default_worker_threads
    if batch_size > 1:
        worker_threads = max(requested_threads, 2 * batch_size)
    if threads_hit and worker_threads > requested_threads:
        notices.append((logging.INFO, f"{threads_hit[0]} raised to {2 * batch_size} "
                                      f"(2 x SMSERVE_BATCH_SIZE={batch_size}): each request waiting for its batch "
                                      f"holds a predict thread"))

    family_options = {}
    for option in fenv.options:
        raw = env.get(option.variable)
        family_options[option.variable] = option.default if raw is None or raw == "" else option.parse(option.variable, raw)

    neuron_settings = None
    if variant == "inf1":
        neuron_settings, workers = _neuron_settings(env, fam.name, workers, family_options, Path(dev_dir),
                                                    Path(sysfs_root))

    return Settings(
        family=fam.name,
        variant=variant,
        port=port,
        host=host,
        safe_port_range=safe_port_range,
        base_dir=base_dir,
        model_dir=resolved_model_dir,
        multi_model=multi_model,
        program=program,
        program_explicit=program_explicit,
        submit_directory=env.get("SAGEMAKER_SUBMIT_DIRECTORY") or None,
        log_level=log_level,
        log_format=log_format,
        access_log=boolean("SMSERVE_ACCESS_LOG", True),
        log_ping=boolean("SMSERVE_LOG_PING", False),
        debug=boolean("SMSERVE_DEBUG", False),
        metrics=boolean("SMSERVE_METRICS", True),
        workers=workers,
        worker_threads=worker_threads,
        batch_size=batch_size,
        batch_delay=batch_delay_ms / 1000.0,
        max_queue=integer("SMSERVE_MAX_QUEUE", 100, 0),
        request_timeout=request_timeout,
        hung_grace=seconds("SMSERVE_HUNG_GRACE", 30.0),
        startup_timeout=seconds("SAGEMAKER_STARTUP_TIMEOUT", 600.0),
        graceful_timeout=graceful,
        max_request_bytes=max_request,
        header_timeout=seconds("SMSERVE_HEADER_TIMEOUT", 10.0),
        idle_timeout=seconds("SMSERVE_IDLE_TIMEOUT", 75.0),
        max_header_bytes=integer("SMSERVE_MAX_HEADER_BYTES", 65_536, 1024),
        max_connections=integer("SMSERVE_MAX_CONNECTIONS", 0, 1) or None,
        decode_factor=integer("SMSERVE_DECODE_FACTOR", 16, 1),
        response_max_bytes=response_max,
        default_accept=(env.get("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT") or "application/json").strip(),
        batch=batch,
        batch_strategy=strategy,
        max_concurrent_transforms=parse_int("SAGEMAKER_MAX_CONCURRENT_TRANSFORMS", concurrent, 1) if concurrent else None,
        max_payload_mb=max_payload_mb,
        skip_requirements=boolean("SMSERVE_SKIP_REQUIREMENTS", False),
        preload_framework=boolean("SMSERVE_PRELOAD_FRAMEWORK", True),
        model_load_retries=integer("SMSERVE_MODEL_LOAD_RETRIES", 0, 0),
        gpu_pinning=boolean("SMSERVE_GPU_PINNING", True),
        ca_repository_arn=env.get("CA_REPOSITORY_ARN") or None,
        cuda_visible_devices=env.get("CUDA_VISIBLE_DEVICES"),
        user_thread_vars=frozenset(name for name in THREAD_VARS if env.get(name)),
        notices=tuple(notices),
        family_options=family_options,
        region=env.get("SAGEMAKER_REGION") or env.get("AWS_REGION") or None,
        neuron=neuron_settings,
        mme=mme,
        unix_socket=Path(env["SMSERVE_UNIX_SOCKET"]) if env.get("SMSERVE_UNIX_SOCKET") else None,
        served_model_name=(env.get("SMSERVE_SERVED_MODEL_NAME") or "model"),
        requirements_cache=Path(env["SMSERVE_REQUIREMENTS_CACHE"]) if env.get("SMSERVE_REQUIREMENTS_CACHE") else None,
    )
