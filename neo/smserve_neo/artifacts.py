"""What a Neo model directory holds, read from its files before any worker loads it (neo.md §7.2, §7.5).

DLR's own checks fail late and often silently: a load error can carry an empty message, a Treelite library
of the wrong ABI hangs the runtime, a `.meta` for another device only prints to stderr. Reading the file names,
the `.meta` JSON and the exported symbols of a Treelite library here turns each of those into one startup line
that names the file and the fix. Nothing here imports numpy or dlr, and no user library is ever loaded.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

from smserve.errors import StartupError

TVM = "tvm"
RELAY_VM = "relayvm"
TREELITE = "treelite"

LIBDLR = "libdlr.so"
# files Neo writes next to the graph that are never graph candidates (DLR skips them too)
NOT_GRAPHS = ("model-shapes.json", "hyperparams.json", "version.json")

# Treelite ABI generations, told apart by the functions a compiled library exports (neo.md §7.5)
ABI_09X = "0.9x"
ABI_1X_3X = "1.x-3.x"
ABI_TL2CGEN = "tl2cgen"
ABI_UNKNOWN = "unknown"


@dataclass(frozen=True)
class Artifacts:
    model_dir: Path
    backend: str
    library: Path  # the compiled model library (.so)
    graph: Path | None = None
    params: Path | None = None
    meta: dict | None = None
    meta_path: Path | None = None
    own_libdlr: Path | None = None  # a libdlr.so shipped inside the model dir
    treelite_abi: str | None = None
    graph_shapes: dict | None = None  # TVM: declared shape of each input and weight node, from the graph JSON

    @property
    def target_device(self) -> str | None:
        requirements = (self.meta or {}).get("Requirements") or {}
        value = requirements.get("TargetDeviceType")
        return str(value).lower() if value else None


def _one(found: list[Path], kind: str, model_dir: Path, fix: str) -> Path:
    if len(found) == 1:
        return found[0]
    if not found:
        raise StartupError(f"model directory {model_dir} has no {kind}; {fix}")
    names = ", ".join(p.name for p in found)
    raise StartupError(f"model directory {model_dir} has {len(found)} {kind} files ({names}); DLR loads exactly "
                       f"one: keep the one of the compiled model and remove the others")


def _read_meta(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise StartupError(f"{path} is not valid JSON ({exc}); it must be the .meta file written by the Neo "
                           f"compiler, or be removed") from None
    if not isinstance(value, dict):
        raise StartupError(f"{path} must hold a JSON object (the Neo compiler's metadata); remove it or fix it")
    return value


def inspect(model_dir: Path) -> Artifacts:
    """The DLR backend of `model_dir` and the files it will load, with DLR's own precedence (`GetBackend`)."""
    files = sorted(p for p in model_dir.iterdir() if p.is_file() and not p.name.startswith("."))
    by_suffix: dict[str, list[Path]] = {}
    for path in files:
        by_suffix.setdefault(path.suffix, []).append(path)
    own = model_dir / LIBDLR
    own_libdlr = own if own.is_file() else None
    libraries = [p for p in by_suffix.get(".so", []) if p.name != LIBDLR]
    metas = by_suffix.get(".meta", [])
    meta_path = _one(metas, ".meta", model_dir, "") if metas else None
    meta = _read_meta(meta_path) if meta_path else None

    if by_suffix.get(".tensorrt"):
        raise StartupError(f"{by_suffix['.tensorrt'][0]}: this model requires DLR release-1.1.0 (TensorRT "
                           f"integration), which this image does not carry; recompile it with Neo for the target")
    if by_suffix.get(".params"):
        params = _one(by_suffix[".params"], ".params", model_dir, "")
        graphs = [p for p in by_suffix.get(".json", []) if p.name not in NOT_GRAPHS]
        graph = _one(graphs, "graph .json", model_dir,
                     "a TVM model needs its graph (compiled_model.json) next to compiled.params")
        library = _one(libraries, "compiled .so", model_dir,
                       "a TVM model needs its operator library (compiled.so) next to compiled.params")
        return Artifacts(model_dir, TVM, library, graph, params, meta, meta_path, own_libdlr,
                         graph_shapes=_graph_shapes(graph))
    if by_suffix.get(".ro"):
        _one(by_suffix[".ro"], ".ro", model_dir, "")
        library = _one(libraries, "compiled .so", model_dir, "a Relay VM model needs its .so next to the .ro file")
        if meta is None:
            raise StartupError(f"model directory {model_dir} holds a Relay VM model (.ro) without its .meta file "
                               f"(input and output names and types); copy the .meta the Neo compiler wrote")
        return Artifacts(model_dir, RELAY_VM, library, None, None, meta, meta_path, own_libdlr)
    hexagon = [p for p in libraries if p.name.endswith("_hexagon_model.so")]
    if hexagon:
        raise StartupError(f"{hexagon[0]} is a Hexagon model: it runs only on Qualcomm Hexagon builds of DLR, not "
                           f"in this image; compile the model for an x86_64 target")
    if libraries:
        library = _one(libraries, "compiled .so", model_dir, "")
        return Artifacts(model_dir, TREELITE, library, None, None, meta, meta_path, own_libdlr,
                         treelite_abi(library))
    raise StartupError(f"model directory {model_dir} holds no Neo-compiled model (DLR: unable to determine "
                       f"backend): expected compiled.so + compiled_model.json + compiled.params (TVM), a .ro "
                       f"(Relay VM) or one Treelite .so; found {', '.join(p.name for p in files) or 'no files'}")


def _graph_shapes(graph: Path) -> dict[str, list[int]]:
    """Declared shapes of the graph's input and weight nodes: Neo compiles for one batch size, and DLR checks
    only element counts, so the generic app needs them to tell N rows from one (nothing else reads them)."""
    try:
        value = json.loads(graph.read_text(encoding="utf-8"))
        nodes, row_ptr = value["nodes"], value["node_row_ptr"]
        shapes = value["attrs"]["shape"][1]
        return {nodes[i]["name"]: [int(v) for v in shapes[row_ptr[i]]] for i in value["arg_nodes"]}
    except (OSError, ValueError, TypeError, KeyError, IndexError) as exc:
        raise StartupError(f"{graph} is not a TVM graph JSON ({type(exc).__name__}: {exc}); it must be the "
                           f"compiled_model.json the Neo compiler wrote") from None


def check_device(artifacts: Artifacts, dev_type: str) -> None:
    """DLR refuses a `.meta` compiled for another device with an empty error (the reason only on stderr)."""
    target = artifacts.target_device
    if target and target != dev_type:
        raise StartupError(f"{artifacts.meta_path}: compiled model requires device type \"{target}\" but this "
                           f"container runs on \"{dev_type}\"; "
                           + ("run it on a GPU instance with a GPU image (USE_GPU=1)" if target == "gpu"
                              else f"recompile it with Neo for a {dev_type} target"))


# ---------------------------------------------------------------- Treelite ABI from exported symbols
_ABI_MARKERS = (
    (ABI_TL2CGEN, {"get_num_target", "postprocess"}),
    (ABI_1X_3X, {"get_num_class", "get_pred_transform"}),
    (ABI_09X, {"get_num_output_group"}),
)


def treelite_abi(library: Path) -> str:
    symbols = exported_symbols(library)
    for abi, markers in _ABI_MARKERS:
        if markers <= symbols:
            return abi
    return ABI_UNKNOWN


def exported_symbols(path: Path) -> set[str]:
    """Names of the defined dynamic symbols of a little-endian ELF64 shared library, read from .dynsym
    without loading it (loading runs its constructors, and a wrong library may hang DLR)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise StartupError(f"{path} cannot be read ({exc})") from None
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise StartupError(f"{path} is not a 64-bit little-endian ELF shared library (x86_64 Linux); recompile the "
                           f"model with Neo for an x86_64 Linux target")
    try:
        shoff, = struct.unpack_from("<Q", data, 0x28)
        shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
        sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
        names: set[str] = set()
        for _name, kind, _flags, _addr, offset, size, link, _info, _align, entsize in sections:
            if kind != 11 or not entsize:  # SHT_DYNSYM
                continue
            strtab = sections[link]
            str_offset, str_size = strtab[4], strtab[5]
            for index in range(size // entsize):
                st_name, _st_info, _other, st_shndx = struct.unpack_from("<IBBH", data, offset + index * entsize)
                if st_shndx == 0 or not st_name or st_name >= str_size:  # undefined: imported, not exported
                    continue
                start = str_offset + st_name
                names.add(data[start:data.index(b"\0", start)].decode("utf-8", "replace"))
        return names
    except (struct.error, IndexError, ValueError) as exc:
        raise StartupError(f"{path} is a damaged ELF file ({exc}); recompile or re-upload the model") from None


# ---------------------------------------------------------------- image app shape file
SHAPES_FILE = "model-shapes.json"


def read_image_shape(model_dir: Path) -> tuple[str, tuple[int, int, int, int]]:
    """(input name, [1, C, H, W]) from model-shapes.json, as AWS's image-classification-neo handler reads it:
    the last entry, N forced to 1; refused at startup where AWS fails on every request."""
    path = model_dir / SHAPES_FILE
    if not path.is_file():
        raise StartupError(f"Shape info must be given as model-shapes.json: {path} is missing; write "
                           f'[{{"name": "data", "shape": [1, 3, 224, 224]}}] there, or set SMSERVE_NEO_APP to '
                           f"another app")
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
        last = entries[-1]
        name, shape = str(last["name"]), [int(v) for v in last["shape"]]
    except (OSError, ValueError, TypeError, KeyError, IndexError) as exc:
        raise StartupError(f"Error parsing shape info: {path} ({type(exc).__name__}: {exc}); it must be a JSON "
                           f'list of {{"name": ..., "shape": [N, C, H, W]}}') from None
    if len(shape) != 4:
        raise StartupError(f"Error parsing shape info: {path}: the image app needs a 4-dimensional shape "
                           f"[N, C, H, W], got {shape}")
    if shape[1] not in (1, 3) or shape[2] < 1 or shape[3] < 1:
        raise StartupError(f"{path}: the image app reads grey (C = 1) or RGB (C = 3) images of positive size; "
                           f"got shape {shape}: fix model-shapes.json or provide neo_preprocess")
    return name, (1, shape[1], shape[2], shape[3])


def has_image_shape(model_dir: Path) -> bool:
    """`auto` app rule: model-shapes.json exists and its last entry is 4-dimensional."""
    try:
        entries = json.loads((model_dir / SHAPES_FILE).read_text(encoding="utf-8"))
        return len(entries[-1]["shape"]) == 4
    except (OSError, ValueError, TypeError, KeyError, IndexError):
        return False
