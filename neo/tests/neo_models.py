"""Real Neo/DLR test models, built on the fly (neo.md §8), with numpy oracles, and the bad artifacts of the
startup-error checks (neo.md §7.2, §7.5, checklist 27–33).

- Recipe A (§8.1): a hand-built Treelite 0.93 ensemble exported with gcc (`treelite_trees`).
- Recipe B (§8.2): TVM graph-executor artifacts whose operators are hand-written C functions with the TVM
  packed-function signature (`tvm_classifier`, `tvm_image_model`); no TVM compiler involved.
- Bad artifacts: two `.params` files, Treelite 1.x–3.x and tl2cgen ABI stand-ins, a model-dir `libdlr.so` that
  cannot be loaded, a model dir carrying its own copy of the real `libdlr.so`.

Only gcc and numpy are needed (treelite 0.93 for recipe A, imported lazily, so this module also imports in a venv
without it). Nothing here imports `dlr` except `disable_dlr_telemetry`, which must run before any `import dlr`.
Every generator takes a parent directory and returns the model directory it created (`parent / name`, which must
not exist yet, so a stale file can never change a backend decision).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import struct
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

# ----------------------------------------------------------------------------------------------- telemetry

TELEMETRY_OFF = {"enable_phone_home": False, "enable_device_info": False}


def dlr_package_dir() -> Path:
    """Folder of the installed `dlr` package, found without importing it (importing it may phone home)."""
    spec = importlib.util.find_spec("dlr")
    if spec is None or not spec.origin or not spec.origin.endswith("__init__.py"):
        raise RuntimeError("the dlr package is not installed in this environment")
    return Path(spec.origin).parent


def dlr_config_path() -> Path:
    """`dlr/counter/ccm_config.json`: read by `dlr.counter.phone_home` at import time (neo.md §7.7)."""
    return dlr_package_dir() / "counter" / "ccm_config.json"


def _config_disables(path: Path) -> bool:
    try:
        return json.loads(path.read_text()).get("enable_phone_home", True) is False
    except (OSError, ValueError, AttributeError):
        return False


def disable_dlr_telemetry() -> Path:
    """Turn DLR's phone-home off in this process; call it before the first `import dlr` (host venv only).

    dlr 1.6.0 decides at import time (`phone_home.MGR = PhoneHome.get_instance()`): when the config file is
    missing it writes one that enables the feature, prints the CALL HOME notice and posts a record to
    api.neo-dlr.amazonaws.com; every `DLRModel(...)` then posts another through `MGR`. So the file must say
    `enable_phone_home: false` before the import. It is written only when it does not already say so (the host
    venv; an image ships it). `PhoneHome.disable_feature()` rewrites that file on every call and does not clear
    `MGR`, so it is called only when phone-home is actually active, and the in-process switches are cleared
    directly. Returns the config path.
    """
    path = dlr_config_path()
    if not _config_disables(path):
        path.write_text(json.dumps(TELEMETRY_OFF))
    from dlr.counter import phone_home

    home = getattr(phone_home, "PhoneHome", None)
    if home is not None:
        active = bool(getattr(phone_home, "MGR", None) or home.instance or home._enable_feature)
        if active and hasattr(home, "disable_feature"):
            try:
                home.disable_feature()
            except OSError:  # read-only site-packages: the switches below still take effect
                pass
        home.instance = None
        home._enable_feature = False
    if hasattr(phone_home, "MGR"):
        phone_home.MGR = None
    return path


def default_libdlr() -> Path:
    """The venv's real `libdlr.so` (the dlr 1.6.0 manylinux wheel installs it at `<prefix>/dlr/libdlr.so`)."""
    for candidate in (Path(sys.prefix) / "dlr" / "libdlr.so", Path(sys.prefix) / "local" / "dlr" / "libdlr.so",
                      dlr_package_dir() / "libdlr.so"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"no libdlr.so under {sys.prefix}/dlr or next to the dlr package")


# ----------------------------------------------------------------------------------------------- C builds

def gcc_shared(sources: dict[str, str], out: Path, extra_args: Sequence[str] = ()) -> Path:
    """Compile C `sources` (file name → text; `.h` files are only written) into the shared library `out`.

    The one place that runs the compiler: `gcc -O2 -shared -fPIC <*.c> <extra_args> -lm`, sources in a private
    temporary folder. Raises RuntimeError with gcc's output on failure.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="neo-gcc-") as tmp:
        c_files = []
        for name, text in sources.items():
            (Path(tmp) / name).write_text(text)
            if name.endswith(".c"):
                c_files.append(name)
        command = ["gcc", "-O2", "-shared", "-fPIC", "-o", str(out.resolve()), *c_files, *extra_args, "-lm"]
        run = subprocess.run(command, cwd=tmp, capture_output=True, text=True, timeout=60)
    if run.returncode != 0:
        raise RuntimeError(f"gcc failed ({run.returncode}): {' '.join(command)}\n{run.stdout}{run.stderr}")
    return out


def _new_dir(parent: Path, name: str) -> Path:
    directory = Path(parent) / name
    directory.mkdir(parents=True)
    return directory


# ----------------------------------------------------------------------------------------------- recipe A

# Two trees over 3 features. A split node is (feature, threshold, default_left, left, right) with the test
# `x[feature] < threshold` (true → left); NaN or a missing column takes the default side. A leaf is a float.
# Rows [1,2,3], [4,5,6], [7,8,9] → 3, -3, 3. Column 1 matters: [1, NaN, 3] → -1 (tree 0 goes right on a
# missing column 1), and a row with only column 0 ([1]) → -1 as well.
TREES: tuple[dict[int, object], ...] = (
    {0: (1, 4.0, False, 1, 2), 1: 2.0, 2: (0, 6.0, True, 3, 4), 3: -2.0, 4: 2.0},
    {0: (2, 4.0, True, 1, 2), 1: 1.0, 2: (0, 6.0, True, 3, 4), 3: -1.0, 4: 1.0},
)
TREE_FEATURES = 3
TREE_ROWS = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]], dtype=np.float32)
TREE_EXPECTED = np.array([[3.0], [-3.0], [3.0]], dtype=np.float32)


def _walk(tree: dict[int, object], row: np.ndarray) -> float:
    node = tree[0]
    while isinstance(node, tuple):
        feature, threshold, default_left, left, right = node
        value = row[feature]
        go_left = default_left if np.isnan(value) else bool(value < np.float32(threshold))
        node = tree[left if go_left else right]
    return float(node)


def treelite_reference(rows: np.ndarray) -> np.ndarray:
    """Oracle of `treelite_trees`: float32 [rows, 1], columns beyond the given ones (and NaN) are missing."""
    x = np.asarray(rows, dtype=np.float32)
    if x.ndim == 1:
        x = x[None, :]
    full = np.full((x.shape[0], TREE_FEATURES), np.nan, dtype=np.float32)
    full[:, :x.shape[1]] = x[:, :TREE_FEATURES]
    sums = [sum(_walk(tree, row) for tree in TREES) for row in full]
    return np.asarray(sums, dtype=np.float32).reshape(-1, 1)


def treelite_trees(parent: Path, name: str = "trees") -> Path:
    """Recipe A: `TREES` built with treelite 0.93's ModelBuilder and exported by gcc to `compiled.so`; the
    directory's only `.so`, so DLR picks its Treelite backend. Input `data` float32 [rows, ≤3], output [rows, 1]."""
    import treelite  # test-only dependency (neo/requirements-test.txt)

    directory = _new_dir(parent, name)
    builder = treelite.ModelBuilder(num_feature=TREE_FEATURES)
    for spec in TREES:
        tree = treelite.ModelBuilder.Tree()
        for key, node in spec.items():  # indexing a Tree creates the node when it does not exist yet
            if isinstance(node, tuple):
                feature, threshold, default_left, left, right = node
                tree[key].set_numerical_test_node(feature, "<", threshold, default_left, left, right)
            else:
                tree[key].set_leaf_node(node)
        tree[0].set_root()
        builder.append(tree)
    builder.commit().export_lib(toolchain="gcc", libpath=str(directory / "compiled.so"), nthread=1)
    return directory


def _tree_c_expr(tree: dict[int, object], key: int, missing, value) -> str:
    node = tree[key]
    if not isinstance(node, tuple):
        return f"{float(node)!r}f"
    feature, threshold, default_left, left, right = node
    left_expr = _tree_c_expr(tree, left, missing, value)
    right_expr = _tree_c_expr(tree, right, missing, value)
    default = left_expr if default_left else right_expr
    return (f"({missing(feature)} ? {default} : "
            f"({value(feature)} < {float(threshold)!r}f ? {left_expr} : {right_expr}))")


def _trees_c_sum(missing, value) -> str:
    return " + ".join(_tree_c_expr(tree, 0, missing, value) for tree in TREES)


# ----------------------------------------------------------------------------------------------- ABI stand-ins

def treelite3_abi(parent: Path, name: str = "treelite3") -> Path:
    """Stand-in for a treelite 1.x–3.x `export_lib` (3.9.1 needs numpy<2): a gcc `compiled.so` with that ABI's
    symbol set (neo.md §7.5: get_num_class … get_leaf_output_type, get_ratio_c, predict) and no
    `get_num_output_group`, so libdlr 1.6.0's Treelite 0.9x runtime refuses it. `predict` computes `TREES`."""
    directory = _new_dir(parent, name)
    body = _trees_c_sum(lambda f: f"(data[{f}].missing == -1)", lambda f: f"data[{f}].fvalue")
    source = f"""
#include <stddef.h>
union Entry {{ int missing; float fvalue; int qvalue; }};
size_t get_num_class(void) {{ return 1; }}
size_t get_num_feature(void) {{ return {TREE_FEATURES}; }}
const char* get_pred_transform(void) {{ return "identity"; }}
float get_sigmoid_alpha(void) {{ return 1.0f; }}
float get_ratio_c(void) {{ return 1.0f; }}
float get_global_bias(void) {{ return 0.0f; }}
const char* get_threshold_type(void) {{ return "float32"; }}
const char* get_leaf_output_type(void) {{ return "float32"; }}
float predict(union Entry* data, int pred_margin) {{
  (void)pred_margin;
  return {body};
}}
"""
    gcc_shared({"main.c": source}, directory / "compiled.so")
    return directory


def tl2cgen_abi(parent: Path, name: str = "tl2cgen") -> Path:
    """Stand-in for a tl2cgen 1.0 (Treelite 4.x) export: get_num_target, get_num_class(int32_t*),
    get_num_feature, get_threshold_type, get_leaf_output_type, postprocess, predict(data, margin, double*)."""
    directory = _new_dir(parent, name)
    body = _trees_c_sum(lambda f: f"(data[{f}].missing == -1)", lambda f: f"data[{f}].fvalue")
    source = f"""
#include <stdint.h>
union Entry {{ int missing; float fvalue; int qvalue; }};
int32_t get_num_target(void) {{ return 1; }}
void get_num_class(int32_t* out) {{ out[0] = 1; }}
int32_t get_num_feature(void) {{ return {TREE_FEATURES}; }}
const char* get_threshold_type(void) {{ return "float32"; }}
const char* get_leaf_output_type(void) {{ return "float32"; }}
void postprocess(double* result) {{ (void)result; }}
void predict(union Entry* data, int pred_margin, double* result) {{
  result[0] += {body};
  if (!pred_margin) postprocess(result);
}}
"""
    gcc_shared({"main.c": source}, directory / "compiled.so")
    return directory


# ----------------------------------------------------------------------------------------------- libdlr cases

def broken_libdlr(parent: Path, name: str = "broken_libdlr") -> Path:
    """The Treelite model plus a model-dir `libdlr.so` whose dlopen fails: it needs `libnvinfer_missing.so`
    (linked against a stub that is then deleted), like a GPU libdlr that needs TensorRT's libnvinfer."""
    directory = treelite_trees(parent, name)
    with tempfile.TemporaryDirectory(prefix="neo-nvinfer-") as tmp:
        gcc_shared({"nvinfer.c": "int nvinfer_missing_version(void) { return 7; }\n"},
                   Path(tmp) / "libnvinfer_missing.so")
        gcc_shared({"libdlr.c": "int nvinfer_missing_version(void);\n"
                                "int GetDLRVersion(const char** out) { static char v[16];\n"
                                "  v[0] = (char)('0' + nvinfer_missing_version()); v[1] = 0; *out = v; return 0; }\n"},
                   directory / "libdlr.so", extra_args=["-L", tmp, "-Wl,--no-as-needed", "-lnvinfer_missing"])
    return directory


def own_libdlr(parent: Path, name: str = "own_libdlr") -> Path:
    """The Treelite model plus a copy of the venv's real `libdlr.so`: dlr prefers a model-dir library (§7.3)."""
    directory = treelite_trees(parent, name)
    shutil.copy2(default_libdlr(), directory / "libdlr.so")
    return directory


# ----------------------------------------------------------------------------------------------- recipe B

LIST_MAGIC = 0xF7E58D4F05049CB7
ARRAY_MAGIC = 0xDD5E40F096B4A13F
_DL_CODES = {"i": 0, "u": 1, "f": 2}

TVM_HEADER = r"""
#include <stddef.h>
#include <stdint.h>
#include <math.h>

typedef struct { int32_t device_type; int32_t device_id; } DLDevice;
typedef struct { uint8_t code; uint8_t bits; uint16_t lanes; } DLDataType;
typedef struct {
  void* data; DLDevice device; int32_t ndim; DLDataType dtype;
  int64_t* shape; int64_t* strides; uint64_t byte_offset;
} DLTensor;
typedef union { int64_t v_int64; double v_float64; void* v_handle; const char* v_str; } TVMValue;

/* Context symbols the TVM loader fills after dlopen when they exist. */
void* __tvm_module_ctx = NULL;
void (*__TVMAPISetLastError)(const char*) = NULL;

static int fail(const char* message) {
  if (__TVMAPISetLastError) __TVMAPISetLastError(message);
  return -1;
}

/* Argument i as a compact float32 tensor of rank ndim (type code 7 = DLTensor*, 13 = NDArray), else NULL. */
static float* f32_arg(const TVMValue* args, const int* codes, int i, int ndim, const DLTensor** out) {
  if (codes[i] != 7 && codes[i] != 13) return NULL;
  const DLTensor* t = (const DLTensor*)args[i].v_handle;
  if (!t || t->ndim != ndim || t->dtype.code != 2 || t->dtype.bits != 32 || t->dtype.lanes != 1) return NULL;
  if (t->strides) {
    int64_t expected = 1;
    for (int d = ndim - 1; d >= 0; --d) {
      if (t->shape[d] != 1 && t->strides[d] != expected) return NULL;
      expected *= t->shape[d];
    }
  }
  *out = t;
  return (float*)((char*)t->data + t->byte_offset);
}
"""

DENSE_SOFTMAX_C = r"""
#include "tvm_abi.h"

/* out[n, j] = sum_k x[n, k] * w[j, k] + b[j]; arguments x [N, K], w [J, K], b [J], out [N, J]. */
int fused_nn_dense_add(TVMValue* args, int* codes, int nargs, TVMValue* ret, int* ret_code, void* resource) {
  const DLTensor *tx, *tw, *tb, *to;
  if (nargs != 4) return fail("fused_nn_dense_add: expects 4 arguments");
  float* x = f32_arg(args, codes, 0, 2, &tx);
  float* w = f32_arg(args, codes, 1, 2, &tw);
  float* b = f32_arg(args, codes, 2, 1, &tb);
  float* o = f32_arg(args, codes, 3, 2, &to);
  if (!x || !w || !b || !o) return fail("fused_nn_dense_add: arguments must be compact float32 tensors");
  int64_t n = tx->shape[0], k = tx->shape[1], j = tw->shape[0];
  if (tw->shape[1] != k || tb->shape[0] != j || to->shape[0] != n || to->shape[1] != j)
    return fail("fused_nn_dense_add: shape mismatch");
  for (int64_t r = 0; r < n; ++r)
    for (int64_t c = 0; c < j; ++c) {
      double acc = b[c];
      for (int64_t i = 0; i < k; ++i) acc += (double)x[r * k + i] * (double)w[c * k + i];
      o[r * j + c] = (float)acc;
    }
  return 0;
}

/* Row-wise softmax of x [N, J] into out [N, J]. */
int fused_nn_softmax(TVMValue* args, int* codes, int nargs, TVMValue* ret, int* ret_code, void* resource) {
  const DLTensor *tx, *to;
  if (nargs != 2) return fail("fused_nn_softmax: expects 2 arguments");
  float* x = f32_arg(args, codes, 0, 2, &tx);
  float* o = f32_arg(args, codes, 1, 2, &to);
  if (!x || !o) return fail("fused_nn_softmax: arguments must be compact float32 tensors");
  int64_t n = tx->shape[0], j = tx->shape[1];
  if (to->shape[0] != n || to->shape[1] != j) return fail("fused_nn_softmax: shape mismatch");
  for (int64_t r = 0; r < n; ++r) {
    double top = x[r * j], total = 0.0;
    for (int64_t c = 1; c < j; ++c) if (x[r * j + c] > top) top = x[r * j + c];
    for (int64_t c = 0; c < j; ++c) total += exp((double)x[r * j + c] - top);
    for (int64_t c = 0; c < j; ++c) o[r * j + c] = (float)(exp((double)x[r * j + c] - top) / total);
  }
  return 0;
}
"""

IMAGE_STATS_C = r"""
#include "tvm_abi.h"

/* x [N, C, H, W] → out [N, 2C]: per-channel mean (summed in double) then per-channel max. */
int fused_image_stats(TVMValue* args, int* codes, int nargs, TVMValue* ret, int* ret_code, void* resource) {
  const DLTensor *tx, *to;
  if (nargs != 2) return fail("fused_image_stats: expects 2 arguments");
  float* x = f32_arg(args, codes, 0, 4, &tx);
  float* o = f32_arg(args, codes, 1, 2, &to);
  if (!x || !o) return fail("fused_image_stats: arguments must be compact float32 tensors");
  int64_t n = tx->shape[0], c = tx->shape[1], hw = tx->shape[2] * tx->shape[3];
  if (to->shape[0] != n || to->shape[1] != 2 * c || hw <= 0) return fail("fused_image_stats: shape mismatch");
  for (int64_t b = 0; b < n; ++b)
    for (int64_t ch = 0; ch < c; ++ch) {
      const float* plane = x + (b * c + ch) * hw;
      double total = 0.0;
      float top = plane[0];
      for (int64_t i = 0; i < hw; ++i) {
        total += plane[i];
        if (plane[i] > top) top = plane[i];
      }
      o[b * 2 * c + ch] = (float)(total / (double)hw);
      o[b * 2 * c + c + ch] = top;
    }
  return 0;
}
"""


def params_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """TVM `SaveParams` format (neo.md §8.2): name list, then one CPU NDArray record per name, little-endian."""
    parts = [struct.pack("<QQQ", LIST_MAGIC, 0, len(arrays))]
    for name in arrays:
        encoded = name.encode()
        parts += [struct.pack("<Q", len(encoded)), encoded]
    parts.append(struct.pack("<Q", len(arrays)))
    for array in arrays.values():
        array = np.ascontiguousarray(array)
        data = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
        parts.append(struct.pack("<QQiiiBBH", ARRAY_MAGIC, 0, 1, 0, array.ndim,
                                 _DL_CODES[array.dtype.kind], array.dtype.itemsize * 8, 1))
        parts.append(struct.pack(f"<{array.ndim}q", *array.shape))
        parts += [struct.pack("<q", len(data)), data]
    return b"".join(parts)


def write_tvm_model(directory: Path, *, c_source: str, inputs: dict[str, tuple[list[int], str]],
                    params: dict[str, np.ndarray], ops: Sequence[tuple[str, str, Sequence[str], list[int]]],
                    outputs: dict[str, str], target: str | None = "cpu") -> Path:
    """Write the four Neo cloud files of a graph-executor model into `directory`.

    `inputs`: data input name → (shape, dtype); `params`: weight name → array; `ops`: (node name, C function,
    input node names, float32 output shape) in execution order; `outputs`: op node name → output name (graph
    heads, in order); `target`: `compiled.meta`'s TargetDeviceType, or None for no `.meta`.
    """
    directory = Path(directory)
    gcc_shared({"tvm_abi.h": TVM_HEADER, "ops.c": c_source}, directory / "compiled.so")

    nodes: list[dict] = []
    index: dict[str, int] = {}
    shapes: list[list[int]] = []
    dtypes: list[str] = []
    for name, (shape, dtype) in inputs.items():
        index[name] = len(nodes)
        nodes.append({"op": "null", "name": name, "inputs": []})
        shapes.append(list(shape))
        dtypes.append(dtype)
    for name, array in params.items():
        index[name] = len(nodes)
        nodes.append({"op": "null", "name": name, "inputs": []})
        shapes.append(list(array.shape))
        dtypes.append(str(array.dtype))
    arg_nodes = list(range(len(nodes)))
    for name, func, args, shape in ops:
        index[name] = len(nodes)
        nodes.append({"op": "tvm_op", "name": name, "inputs": [[index[a], 0, 0] for a in args],
                      "attrs": {"func_name": func, "num_inputs": str(len(args)), "num_outputs": "1",
                                "flatten_data": "0"}})
        shapes.append(list(shape))
        dtypes.append("float32")
    graph = {
        "nodes": nodes,
        "arg_nodes": arg_nodes,
        "node_row_ptr": list(range(len(nodes) + 1)),
        "heads": [[index[name], 0, 0] for name in outputs],
        "attrs": {"dltype": ["list_str", dtypes], "shape": ["list_shape", shapes],
                  "storage_id": ["list_int", list(range(len(nodes)))]},
    }
    (directory / "compiled_model.json").write_text(json.dumps(graph, indent=1))
    (directory / "compiled.params").write_bytes(params_bytes(params))
    if target is not None:
        meta = {"Model": {"Inputs": [{"name": n, "dtype": d, "shape": list(s)} for n, (s, d) in inputs.items()],
                          "Outputs": [{"name": out, "dtype": "float32"} for out in outputs.values()]},
                "Requirements": {"TargetDevice": "ML_C5", "TargetDeviceType": target}}
        (directory / "compiled.meta").write_text(json.dumps(meta, indent=1))
    return directory


CLASSIFIER_W = np.array([[0.5, -0.25, 0.125, 1.0],
                         [-0.75, 0.5, 0.25, -0.5],
                         [0.25, 0.25, -1.0, 0.75]], dtype=np.float32)
CLASSIFIER_B = np.array([0.1, -0.2, 0.05], dtype=np.float32)


def classifier_reference(x: np.ndarray) -> np.ndarray:
    """Oracle of `tvm_classifier`: softmax(x·Wᵀ + b) in float64, as float32 [N, 3]."""
    x = np.asarray(x, dtype=np.float32).reshape(-1, CLASSIFIER_W.shape[1]).astype(np.float64)
    logits = x @ CLASSIFIER_W.T.astype(np.float64) + CLASSIFIER_B.astype(np.float64)
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)


def tvm_classifier(parent: Path, name: str = "classifier", target: str = "cpu", with_meta: bool = True) -> Path:
    """Recipe B reference model (§8.2): input `data` float32 [1, 4]; weights `p0` = W [3, 4], `p1` = b [3];
    operators fused_nn_dense_add then fused_nn_softmax; output float32 [1, 3], named `probabilities` by
    `compiled.meta` (whose TargetDeviceType is `target`: "gpu" gives checklist item 28's artifact)."""
    directory = _new_dir(parent, name)
    return write_tvm_model(
        directory, c_source=DENSE_SOFTMAX_C,
        inputs={"data": ([1, 4], "float32")},
        params={"p0": CLASSIFIER_W, "p1": CLASSIFIER_B},
        ops=[("fused_nn_dense_add", "fused_nn_dense_add", ["data", "p0", "p1"], [1, 3]),
             ("fused_nn_softmax", "fused_nn_softmax", ["fused_nn_dense_add"], [1, 3])],
        outputs={"fused_nn_softmax": "probabilities"},
        target=target if with_meta else None)


def image_reference(image: np.ndarray) -> np.ndarray:
    """Oracle of `tvm_image_model`: [N, 2C] float32, channel means then channel maxima of the image cast to
    float32 (as DLR casts). Accepts HW (one channel), CHW or NCHW, uint8 or float."""
    x = np.asarray(image).astype(np.float32)
    x = x.reshape((1, 1) + x.shape) if x.ndim == 2 else x[None] if x.ndim == 3 else x
    flat = x.reshape(x.shape[0], x.shape[1], -1)
    means = flat.astype(np.float64).mean(axis=2).astype(np.float32)
    return np.concatenate([means, flat.max(axis=2)], axis=1)


def tvm_image_model(parent: Path, name: str = "image", channels: int = 3, height: int = 224,
                    width: int = 224) -> Path:
    """A TVM graph model for the image_classification app: input `data` float32 [1, C, H, W], one operator,
    output `scores` float32 [1, 2C] (channel means, then channel maxima; see `image_reference`), no weights
    (an empty `compiled.params`), plus `model-shapes.json` = [{"name": "data", "shape": [1, C, H, W]}]."""
    directory = _new_dir(parent, name)
    shape = [1, channels, height, width]
    write_tvm_model(directory, c_source=IMAGE_STATS_C, inputs={"data": (shape, "float32")}, params={},
                    ops=[("fused_image_stats", "fused_image_stats", ["data"], [1, 2 * channels])],
                    outputs={"fused_image_stats": "scores"})
    (directory / "model-shapes.json").write_text(json.dumps([{"name": "data", "shape": shape}]))
    return directory


def two_params(parent: Path, name: str = "two_params") -> Path:
    """The classifier plus a second weights file `extra.params`: DLR refuses more than one `*.params`."""
    directory = tvm_classifier(parent, name)
    shutil.copyfile(directory / "compiled.params", directory / "extra.params")
    return directory


# ----------------------------------------------------------------------------------------------- ABI detection

def elf_exported_symbols(path: Path) -> set[str]:
    """Names of the functions and objects an ELF64 little-endian shared library defines and exports (its
    `.dynsym` entries that are defined, global, weak or GNU-unique, default or protected visibility), read from
    the file alone: no dlopen, so none of the library's constructors run. Same set as `nm -D --defined-only`
    (binutils, which a Debian slim image lacks)."""
    blob = Path(path).read_bytes()
    if blob[:4] != b"\x7fELF" or blob[4] != 2 or blob[5] != 1:
        raise ValueError(f"{path}: not an ELF64 little-endian file")
    shoff, = struct.unpack_from("<Q", blob, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", blob, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", blob, shoff + i * shentsize) for i in range(shnum)]
    names: set[str] = set()
    for _name, sh_type, _flags, _addr, offset, size, link, _info, _align, entsize in sections:
        if sh_type != 11:  # SHT_DYNSYM
            continue
        strtab_offset = sections[link][4]
        for start in range(offset + entsize, offset + size, entsize or 24):  # entry 0 is the null symbol
            st_name, st_info, st_other, st_shndx = struct.unpack_from("<IBBH", blob, start)
            if st_shndx == 0 or (st_info >> 4) not in (1, 2, 10) or (st_other & 3) not in (0, 3):
                continue
            end = blob.index(b"\0", strtab_offset + st_name)
            names.add(blob[strtab_offset + st_name:end].decode())
    return names


def so_abi(symbols: set[str]) -> str:
    """Which model ABI an exported-symbol set belongs to (neo.md §7.5 markers); TVM libraries are told apart by
    the directory (a `.params` file), not here."""
    if "get_num_target" in symbols and "postprocess" in symbols:
        return "tl2cgen"
    if "get_num_class" in symbols and "get_pred_transform" in symbols:
        return "treelite-1.x-3.x"
    if "get_num_output_group" in symbols and ("predict" in symbols or "predict_multiclass" in symbols):
        return "treelite-0.9x"
    return "unknown"


# ----------------------------------------------------------------------------------------------- shared suites
# What tests/families.py asks of every family's test models, for the shared container suite (tests/container):
# the default model is the TVM classifier, served by the generic app (JSON rows of 4 values in, JSON out).

def write_default_model(model_dir: Path) -> None:
    """The classifier's files written into an existing (possibly non-empty) `model_dir`."""
    with tempfile.TemporaryDirectory() as scratch:
        built = tvm_classifier(Path(scratch))
        for path in built.iterdir():
            shutil.copyfile(path, Path(model_dir) / path.name)


def predict_default(model_dir: Path, rows: list) -> list:
    """What the generic app answers for `rows` (one request per row batch of shape [1, 4])."""
    return classifier_reference(np.asarray(rows, dtype=np.float32)).tolist()
