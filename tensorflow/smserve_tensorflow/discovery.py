"""SavedModel discovery and backend planning (spec tensorflow.md §2, §3, §10, §12).

Pure functions over values: the core's config module is the only reader of the environment, so everything
configurable arrives here as an argument. The texts produced (model config, batching parameters, command line)
are what the real tensorflow_model_server takes; the built-in backend reads the same values."""

from __future__ import annotations

import itertools
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from smserve.errors import ConfigError, StartupError

SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")
DEFAULT_GRPC_PORT = 9000
DEFAULT_REST_PORT = 8501
_DIGITS = re.compile(r"[0-9]+")  # ASCII only: str.isdigit() also accepts digits TF Serving would not parse


@dataclass(frozen=True)
class ServedModel:
    """One TF Serving model: a base path whose numbered subdirectories are its versions."""

    name: str
    base_path: Path
    versions: tuple[int, ...]


@dataclass(frozen=True)
class Discovery:
    """Models found under the model dir, and layout warnings worth a log line each."""

    models: tuple[ServedModel, ...]
    warnings: tuple[str, ...] = ()


# ---------------------------------------------------------------- discovery (§3)

def discover(model_dir: Path) -> Discovery:
    """Find every SavedModel base path under model_dir; StartupError when there is none or names collide."""
    root = Path(os.path.abspath(model_dir))  # absolute for the backend, symlinks kept so names stay as written
    base_paths: list[Path] = []
    for version_dir in _saved_model_dirs(root):
        base = version_dir.parent
        if base not in base_paths:
            base_paths.append(base)
    if not base_paths:
        raise StartupError(f"no SavedModel bundles found under {model_dir}")

    by_name: dict[str, Path] = {}
    for base in base_paths:
        if base.name in by_name:
            raise StartupError(f"two SavedModel base paths have the same model name {base.name!r}: "
                               f"{by_name[base.name]} and {base}; TF Serving needs unique names, rename one")
        by_name[base.name] = base

    models, warnings = [], []
    for name in sorted(by_name):
        base = by_name[name]
        version_dirs = _version_dirs(base)
        models.append(ServedModel(name, base, tuple(sorted({int(d.name) for d in version_dirs}))))
        for version_dir in version_dirs:
            if (version_dir / "code").is_dir():
                warnings.append(f"{version_dir / 'code'} is inside a model version directory and is not used as "
                                f"handler code; put code/ at the archive root ({root / 'code'})")
            if not any((version_dir / f).is_file() for f in SAVED_MODEL_FILES):
                warnings.append(f"{version_dir} has no saved_model.pb; version {int(version_dir.name)} of model "
                                f"{name!r} cannot load and startup waits for it")
    return Discovery(tuple(models), tuple(warnings))


def find_models(model_dir: Path) -> tuple[ServedModel, ...]:
    """The models of discover(), sorted by name, without the layout warnings."""
    return discover(model_dir).models


def _saved_model_dirs(root: Path) -> Iterable[Path]:
    """Numbered directories holding a SavedModel, strictly below root, in sorted walk order; hidden ones skipped."""
    seen: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        try:
            stat = os.stat(dirpath)
        except OSError:
            dirnames[:] = []
            continue
        if (stat.st_dev, stat.st_ino) in seen:  # a symlink loop, or a second link to a walked tree
            dirnames[:] = []
            continue
        seen.add((stat.st_dev, stat.st_ino))
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        here = Path(dirpath)
        if here != root and _DIGITS.fullmatch(here.name) and any(f in filenames for f in SAVED_MODEL_FILES):
            yield here


def _version_dirs(base: Path) -> list[Path]:
    """All-digit directories directly under a base path: every one is a version TF Serving is asked to load."""
    try:
        entries = sorted(base.iterdir())
    except OSError:
        return []
    return [e for e in entries if _DIGITS.fullmatch(e.name) and e.is_dir()]


def multi_model_base(url: Path) -> tuple[Path | None, str | None]:
    """(base path, warning) of a model loaded on a multi-model endpoint (§12): `url` itself when version directories
    lie directly under it; else the one base path discovery finds below it, with a warning; None when there is no
    such base path or there are several."""
    url = Path(os.path.abspath(url))
    if _version_dirs(url):
        return url, None
    bases = list(dict.fromkeys(version_dir.parent for version_dir in _saved_model_dirs(url)))
    if len(bases) != 1:
        return None, None
    return bases[0], (f"{url} has no version directories of its own; serving the SavedModel base path "
                      f"{bases[0]} found below it (put the version directories directly under the model folder)")


def multi_model_served(url: Path, name: str) -> ServedModel:
    """The one model a multi-model endpoint loaded from `url`, served under the name it was loaded as."""
    base, _ = multi_model_base(url)
    if base is None:
        raise StartupError(f"no SavedModel base path under {url}: put the version directories "
                           f"(e.g. 1/saved_model.pb) directly under it")
    return ServedModel(name, base, tuple(sorted({int(d.name) for d in _version_dirs(base)})))


def choose_default_model(models: Sequence[ServedModel], configured: str | None) -> tuple[str, str | None]:
    """(default model name, warning or None). `None` as text is AWS's marker for "not set"."""
    names = sorted(m.name for m in models)
    if configured and configured.strip() and configured != "None":
        if configured not in names:
            raise StartupError(f"SAGEMAKER_TFS_DEFAULT_MODEL_NAME={configured!r} names no model found; "
                               f"models found: {', '.join(names)}")
        return configured, None
    if not names:
        raise StartupError("no SavedModel bundles found")
    if len(names) > 1:
        return names[0], (f"{len(names)} models found ({', '.join(names)}); requests without tfs-model-name go "
                          f"to {names[0]!r}, the first by name; set SAGEMAKER_TFS_DEFAULT_MODEL_NAME to choose")
    return names[0], None


# ---------------------------------------------------------------- ports (§2)

@dataclass(frozen=True)
class Instance:
    """The loopback ports of one backend process."""

    grpc_port: int
    rest_port: int


_RANGE_FORM = "SAGEMAKER_SAFE_PORT_RANGE must have the form <low>-<high> (e.g. 9000-9999), 1 <= low <= high <= 65535"


def parse_port_range(value: str | tuple[int, int]) -> tuple[int, int]:
    """(low, high) from `lo-hi` (or an already parsed pair)."""
    if isinstance(value, tuple):
        low, high = value
    else:
        parts = value.strip().replace(":", "-").split("-")
        try:
            low, high = (int(p) for p in parts)
        except ValueError:
            raise StartupError(f"invalid SAGEMAKER_SAFE_PORT_RANGE {value!r}: {_RANGE_FORM}") from None
    if not 1 <= low <= high <= 65535:
        raise StartupError(f"invalid SAGEMAKER_SAFE_PORT_RANGE {value!r}: {_RANGE_FORM}")
    return low, high


def plan_instances(count: int, safe_port_range: str | tuple[int, int] | None) -> tuple[Instance, ...]:
    """Ports for `count` backend processes: AWS's fixed layout, or OS-chosen ports beyond the first instance."""
    if count < 1:
        raise ConfigError("SAGEMAKER_TFS_INSTANCE_COUNT", str(count), "an integer >= 1")
    if safe_port_range is None or (isinstance(safe_port_range, str) and not safe_port_range.strip()):
        ports = _free_loopback_ports(2 * (count - 1), avoid={DEFAULT_GRPC_PORT, DEFAULT_REST_PORT})
        others = tuple(Instance(ports[2 * i], ports[2 * i + 1]) for i in range(count - 1))
        return (Instance(DEFAULT_GRPC_PORT, DEFAULT_REST_PORT),) + others
    low, high = parse_port_range(safe_port_range)
    if low + 2 * count > high:
        raise StartupError(f"not enough ports in SAGEMAKER_SAFE_PORT_RANGE {low}-{high} for {count} TF Serving "
                           f"instance(s): each needs 2 ports and low + 2 x count must not exceed high")
    return tuple(Instance(low + 2 * i, low + 2 * i + 1) for i in range(count))


def multi_model_port_halves(safe_port_range: str | tuple[int, int]) -> tuple[range, range]:
    """(REST ports, gRPC ports) of a multi-model endpoint's backends (§12), as AWS splits the range: its first
    90 %, REST ports in the lower half, gRPC ports in the upper half."""
    low, high = parse_port_range(safe_port_range)
    upper = low + int(0.9 * (high - low))
    middle = (low + upper) // 2
    return range(low, middle), range(middle, upper)


def free_multi_model_ports(count: int, safe_port_range: str | tuple[int, int] | None,
                           taken: set[int]) -> tuple[Instance, ...] | None:
    """Ports for the `count` backends of one more model on a multi-model endpoint, none of them `taken` by the
    other models nor bound by another process; None when the range has no more free pairs. Without a range: ports
    the OS reports free."""
    if safe_port_range is None:
        ports = _free_loopback_ports(2 * count, avoid=taken)
        return tuple(Instance(grpc_port=ports[2 * i + 1], rest_port=ports[2 * i]) for i in range(count))
    rest_ports, grpc_ports = multi_model_port_halves(safe_port_range)
    rest = list(itertools.islice(_bindable(rest_ports, taken), count))
    grpc = list(itertools.islice(_bindable(grpc_ports, taken), count))
    if len(rest) < count or len(grpc) < count:
        return None
    return tuple(Instance(grpc_port=g, rest_port=r) for r, g in zip(rest, grpc))


def _bindable(ports: range, taken: set[int]) -> Iterator[int]:
    """The ports of `ports`, lowest first, that are not taken and that a server could listen on now (one a
    backend that is still stopping holds, or another process listens on, is skipped)."""
    for port in ports:
        if port in taken:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: TIME_WAIT is no obstacle
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        yield port


def backend_ports_text(instances: Iterable[Instance]) -> str:
    """The ports of a model's backends as the multi-model front hands them to its model server:
    `<rest>:<grpc>` per backend, comma-separated."""
    return ",".join(f"{i.rest_port}:{i.grpc_port}" for i in instances)


def parse_backend_ports(text: str) -> tuple[Instance, ...]:
    """The reverse of backend_ports_text; ValueError on anything else."""
    instances = []
    for pair in text.split(","):
        rest, _, grpc = pair.strip().partition(":")
        ports = (int(rest), int(grpc))
        if not all(1 <= port <= 65535 for port in ports):
            raise ValueError(f"port out of range in {pair!r}")
        instances.append(Instance(grpc_port=ports[1], rest_port=ports[0]))
    return tuple(instances)


def _free_loopback_ports(n: int, avoid: set[int]) -> list[int]:
    """n distinct ports the OS reports free on 127.0.0.1 (all bound at once so they differ)."""
    held: list[socket.socket] = []
    ports: list[int] = []
    try:
        while len(ports) < n:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            held.append(sock)
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
            if port not in avoid:
                ports.append(port)
    finally:
        for sock in held:
            sock.close()
    return ports


def gpu_memory_fraction(count: int, margin: float) -> float | None:
    """Share of GPU memory per backend when several share a GPU (AWS's formula); None: no limit."""
    return round((1 - margin) / count, 4) if count > 1 else None


def instance_gpu(index: int, gpu_count: int) -> int | None:
    """The GPU instance `index` sees when there are several; None: leave visibility alone."""
    return index % gpu_count if gpu_count > 1 else None


# ---------------------------------------------------------------- batching (§10)

BATCHING_KEYS = ("max_batch_size", "batch_timeout_micros", "num_batch_threads", "max_enqueued_batches")
BATCHING_VARIABLES = {
    "max_batch_size": "SAGEMAKER_TFS_MAX_BATCH_SIZE",
    "batch_timeout_micros": "SAGEMAKER_TFS_BATCH_TIMEOUT_MICROS",
    "num_batch_threads": "SAGEMAKER_TFS_NUM_BATCH_THREADS",
    "max_enqueued_batches": "SAGEMAKER_TFS_MAX_ENQUEUED_BATCHES",
}
BATCH_JOB_ENQUEUED_BATCHES = 100_000_000  # batch transform bounds concurrency itself (AWS)


@dataclass(frozen=True)
class BatchingConfig:
    """Server-side batching parameters; `defaulted` names the keys not set by their variable."""

    enabled: bool = False
    max_batch_size: int = 8
    batch_timeout_micros: int = 1000
    num_batch_threads: int = 1
    max_enqueued_batches: int = 1
    defaulted: tuple[str, ...] = BATCHING_KEYS


def parse_batching(enable: str | None, max_batch_size: str | int | None, batch_timeout_micros: str | int | None,
                   num_batch_threads: str | int | None, max_enqueued_batches: str | int | None,
                   sagemaker_batch: bool, cpu_count: int) -> BatchingConfig:
    """Batching settings from the raw variable values (None or blank: unset); ConfigError on bad values."""
    word = (enable or "false").strip().lower() or "false"
    if word not in ("true", "false"):
        raise ConfigError("SAGEMAKER_TFS_ENABLE_BATCHING", enable or "", "true or false (any case)")
    cpus = max(1, cpu_count)
    defaults = {
        "max_batch_size": 8,
        "batch_timeout_micros": 1000,
        "num_batch_threads": cpus,
        "max_enqueued_batches": BATCH_JOB_ENQUEUED_BATCHES if sagemaker_batch else cpus,
    }
    raw = dict(zip(BATCHING_KEYS, (max_batch_size, batch_timeout_micros, num_batch_threads, max_enqueued_batches)))
    values, defaulted = {}, []
    for key in BATCHING_KEYS:
        value = raw[key]
        if value is None or (isinstance(value, str) and not value.strip()) or word == "false":
            values[key] = defaults[key]  # AWS reads the numbers only with batching on
            defaulted.append(key)
        else:
            values[key] = _positive_int(BATCHING_VARIABLES[key], value)
    return BatchingConfig(enabled=word == "true", defaulted=tuple(defaulted), **values)


def _positive_int(variable: str, value: str | int) -> int:
    try:
        number = int(value.strip()) if isinstance(value, str) else int(value)
    except ValueError:
        raise ConfigError(variable, str(value), "a positive integer") from None
    if number < 1:
        raise ConfigError(variable, str(value), "a positive integer")
    return number


def batching_parameters_text(cfg: BatchingConfig) -> str:
    """The batching parameters file, one `key { value: N }` line per key (AWS tests grep these lines)."""
    return "".join(f"{key} {{ value: {getattr(cfg, key)} }}\n" for key in BATCHING_KEYS)


def defaulted_keys(cfg: BatchingConfig) -> list[str]:
    return list(cfg.defaulted)


def defaulted_warning(cfg: BatchingConfig) -> str | None:
    """The one warning line listing batching keys left at their defaults, or None."""
    if not cfg.defaulted:
        return None
    parts = ", ".join(f"{key}={getattr(cfg, key)} ({BATCHING_VARIABLES[key]})" for key in cfg.defaulted)
    return f"batching parameters left at their defaults: {parts}; set the variables to tune them"


# ---------------------------------------------------------------- backend configuration (§3)

def _text_string(value: str) -> str:
    """A protobuf text-format string literal."""
    out = []
    for char in value:
        if char in ('"', "\\"):
            out.append("\\" + char)
        elif char == "\n":
            out.append("\\n")
        elif char == "\r":
            out.append("\\r")
        elif char == "\t":
            out.append("\\t")
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\{ord(char):03o}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def model_config_text(models: Iterable[ServedModel]) -> str:
    """A text-format ModelServerConfig serving every version of every model (specific version policy)."""
    lines = ["model_config_list {"]
    for model in models:
        lines += [
            "  config {",
            f"    name: {_text_string(model.name)}",
            f"    base_path: {_text_string(str(model.base_path))}",
            '    model_platform: "tensorflow"',
            "    model_version_policy {",
            "      specific {",
            *(f"        versions: {v}" for v in model.versions),
            "      }",
            "    }",
            "  }",
        ]
    lines.append("}")
    return "\n".join(lines) + "\n"


def backend_argv(executable: list[str], instance: Instance, config_path: str | os.PathLike,
                 batching_path: str | os.PathLike | None, intra_op: int, inter_op: int,
                 gpu_memory_fraction: float | None, local_socket: str | None) -> list[str]:
    """The backend command line; flags are tensorflow_model_server's, the built-in backend accepts the same."""
    argv = [*executable,
            f"--port={instance.grpc_port}",
            f"--rest_api_port={instance.rest_port}",
            f"--model_config_file={config_path}",
            "--max_num_load_retries=0"]
    if batching_path is not None:
        argv += ["--enable_batching=true", f"--batching_parameters_file={batching_path}"]
    if intra_op:
        argv.append(f"--tensorflow_intra_op_parallelism={intra_op}")
    if inter_op:
        argv.append(f"--tensorflow_inter_op_parallelism={inter_op}")
    if gpu_memory_fraction is not None:
        argv.append(f"--per_process_gpu_memory_fraction={gpu_memory_fraction}")
    if local_socket:
        argv.append(f"--smserve_local_socket={local_socket}")
    return argv
