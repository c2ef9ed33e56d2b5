"""inf1 variants (spec neo.md §9.2): Inferentia devices, `neuron-ls`, and Neuron-compiled model files.

Standard library only, no framework import: the supervisor calls these before any worker starts. Every function
takes the paths it reads as parameters (the device directory, the sysfs root, the model directory) so that tests
can hand it a fake tree; config.py resolves the NeuronCore arithmetic from them, the supervisor logs the devices
and refuses a Neuron-compiled model when the container has no /dev/neuron* device.

What "Neuron-marked" means (found by reading files, docs/architecture.md "inf1 variants"):
- PyTorch: a TorchScript archive (a zip holding `<name>/code/...py`) whose serialized code calls Neuron
  operators (`ops.neuron.`, `neuron::`) or holds torch-neuron's modules/classes (`torch_neuron.`,
  `classes.neuron.`), as `torch.neuron.trace` and Neo's inf1 compilation write them;
- MXNet: a `*symbol.json` graph with a `_neuron_subgraph_op` node (mxnet-neuron / mx-neuron);
- TensorFlow: a `saved_model.pb` holding a `NeuronOp` node (tensorflow-neuron).
"""

from __future__ import annotations

import glob
import json
import logging
import os
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

from .errors import StartupError

log = logging.getLogger("smserve.neuron")

CORES_PER_DEVICE = 4  # NeuronCores per Inferentia (inf1) chip
INSTANCE_CORES = {"inf1.xlarge": 4, "inf1.2xlarge": 4, "inf1.6xlarge": 16, "inf1.24xlarge": 64}
PCI_VENDOR, PCI_DEVICE = "0x1d0f", "0x7064"  # Amazon, Inferentia (inf1)
NEURON_LS_TIMEOUT = 5.0
NEURON_LS_MAX_CHARS = 4000  # the log line; the full JSON of a 16-device host is longer and says the same

_DEVICE_NAME = re.compile(r"neuron\d+")
TORCHSCRIPT_MARKERS = (b"ops.neuron.", b"neuron::", b"torch_neuron.", b"classes.neuron.")
MXNET_MARKER = b"_neuron_subgraph_op"
TF_MARKER = b"NeuronOp"
SCAN_MAX_FILES = 10_000  # entries of the model directory looked at
SCAN_MAX_BYTES = 512 * 2**20  # bytes read from one file (a frozen graph larger than this is not scanned further)
CHUNK = 2**20


def neuron_devices(dev_dir: Path = Path("/dev")) -> tuple[str, ...]:
    """The Neuron device nodes (/dev/neuron0, /dev/neuron1, ...), sorted by number."""
    try:
        names = [name for name in os.listdir(dev_dir) if _DEVICE_NAME.fullmatch(name)]
    except OSError:
        return ()
    return tuple(str(Path(dev_dir) / name) for name in sorted(names, key=lambda n: int(n[6:])))


def inferentia_pci_devices(sysfs_root: Path = Path("/sys")) -> tuple[str, ...]:
    """PCI addresses of the Inferentia chips the kernel sees (vendor 0x1d0f, device 0x7064), with or without the
    Neuron driver loaded."""
    found = []
    for path in sorted(glob.glob(str(Path(sysfs_root) / "bus" / "pci" / "devices" / "*"))):
        try:
            vendor = Path(path, "vendor").read_text().strip().lower()
            device = Path(path, "device").read_text().strip().lower()
        except OSError:
            continue
        if vendor == PCI_VENDOR and device == PCI_DEVICE:
            found.append(os.path.basename(path))
    return tuple(found)


def neuron_ls(timeout: float = NEURON_LS_TIMEOUT) -> str | None:
    """`neuron-ls --json-output` as one line, or None when the tool is not on PATH. Failures are described in the
    returned text rather than raised: the listing is information, never a reason to stop."""
    tool = shutil.which("neuron-ls")
    if tool is None:
        return None
    try:
        done = subprocess.run([tool, "--json-output"], capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return f"{tool} --json-output did not finish within {timeout:g} s"
    except OSError as exc:
        return f"{tool} --json-output could not run: {exc}"
    if done.returncode != 0:
        return f"{tool} --json-output exited with status {done.returncode}: {done.stderr.strip()[-500:]}"
    text = done.stdout.strip()
    try:
        text = json.dumps(json.loads(text), separators=(",", ":"))
    except ValueError:
        text = " ".join(text.split())
    return text if len(text) <= NEURON_LS_MAX_CHARS else text[:NEURON_LS_MAX_CHARS] + " ... (truncated)"


# ---------------------------------------------------------------- Neuron-compiled model files

def _torchscript_marker(path: Path) -> str | None:
    try:
        with zipfile.ZipFile(path) as archive:
            budget = SCAN_MAX_BYTES
            for info in archive.infolist():
                parts = info.filename.split("/")
                if "code" not in parts[:-1] or not info.filename.endswith(".py") or info.file_size > budget:
                    continue
                budget -= info.file_size
                text = archive.read(info)
                for marker in TORCHSCRIPT_MARKERS:
                    if marker in text:
                        return f"TorchScript code {info.filename} calls {marker.decode()}"
    except (OSError, zipfile.BadZipFile, RuntimeError, ValueError):
        return None
    return None


def _contains(path: Path, marker: bytes) -> bool:
    """Whether the first SCAN_MAX_BYTES of the file contain `marker`, read in chunks (a marker may straddle two)."""
    try:
        with open(path, "rb") as handle:
            tail, read = b"", 0
            while read < SCAN_MAX_BYTES:
                chunk = handle.read(CHUNK)
                if not chunk:
                    return False
                if marker in tail + chunk:
                    return True
                tail, read = chunk[-len(marker):], read + len(chunk)
    except OSError:
        return False
    return False


def _marker(path: Path) -> str | None:
    name = path.name
    if name == "saved_model.pb":
        return "TensorFlow graph holds NeuronOp nodes" if _contains(path, TF_MARKER) else None
    if name.endswith("symbol.json"):
        return "MXNet symbol holds _neuron_subgraph_op nodes" if _contains(path, MXNET_MARKER) else None
    try:
        with open(path, "rb") as handle:
            is_zip = handle.read(4) == b"PK\x03\x04"
    except OSError:
        return None
    return _torchscript_marker(path) if is_zip else None


def neuron_marked_files(model_dir: Path) -> list[tuple[Path, str]]:
    """(file, what marks it) for every Neuron-compiled model file under `model_dir` (code/ and hidden entries
    skipped, symbolic links not followed, at most SCAN_MAX_FILES entries looked at)."""
    found, seen = [], 0
    for root, dirs, files in os.walk(model_dir):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not (root == str(model_dir) and d == "code"))
        for name in sorted(files):
            seen += 1
            if seen > SCAN_MAX_FILES:
                return found
            path = Path(root) / name
            if name.startswith(".") or path.is_symlink() or not path.is_file():
                continue
            marker = _marker(path)
            if marker:
                found.append((path, marker))
    return found


def check_model_devices(model_dir: Path, devices: tuple[str, ...], dev_dir: Path = Path("/dev")) -> None:
    """Refuse to load a Neuron-compiled model when the container has no Neuron device (neo.md §9.2): the framework
    would fail later with an unknown-operator or runtime error that does not say what is missing."""
    if devices:
        return
    marked = neuron_marked_files(model_dir)
    if not marked:
        return
    path, what = marked[0]
    more = f" (and {len(marked) - 1} more file(s))" if len(marked) > 1 else ""
    raise StartupError(
        f"{path} is compiled for AWS Inferentia ({what}){more}, but {Path(dev_dir) / 'neuron0'} is missing: this "
        f"container has no {Path(dev_dir) / 'neuron*'} device, so Neuron operators cannot run. Run it on an inf1 "
        f"instance with the Neuron driver and the device passed to the container (SageMaker ml.inf1.* does this; "
        f"docker run --device=/dev/neuron0), or compile the model for CPU (Neo target ml_c5, or the framework's "
        f"plain trace/export) and serve it with the cpu image")


# ---------------------------------------------------------------- supervisor side (config.NeuronSettings)

def summary_lines(settings) -> list[str]:
    """The inf1 lines of the startup summary: the hardware found and the NeuronCore arithmetic."""
    pci = inferentia_pci_devices(settings.sysfs_root)
    nodes = ", ".join(settings.devices) if settings.devices else "none"
    host = f"{settings.host_cores.value} ({settings.host_cores.source})" if settings.host_cores else \
        "unknown (set NEURON_CORE_HOST_TOTAL; no Neuron device node found), not checked"
    per = settings.cores_per_process or "all"
    return [
        f"  inferentia        {len(pci)} Inferentia device(s) on the PCI bus (vendor {PCI_VENDOR[2:]}, "
        f"device {PCI_DEVICE[2:]}); device nodes: {nodes}",
        f"  neuroncores       {settings.processes} {settings.process_kind} x {per} = {settings.demand or '?'} in use; "
        f"this instance: {host}",
        f"  neuron variables  {' '.join(f'{k}={v}' for k, v in settings.exports)}",
    ]


def prepare(settings, model_dir: Path) -> None:
    """Before the backends and workers start: log `neuron-ls`, refuse a Neuron-compiled model without a device
    (StartupError) and export the Neuron defaults for the workers, the backends and the user's subprocesses."""
    listing = neuron_ls()
    if listing is not None:
        log.info("neuron-ls --json-output: %s", listing)
    check_model_devices(model_dir, settings.devices, settings.dev_dir)
    os.environ.update(settings.exports)
