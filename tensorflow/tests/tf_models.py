"""SavedModel builders for the TensorFlow family tests.

Each builder writes `<parent>/<model name>/<version>/saved_model.pb` (the layout of spec §3) and returns the model's
base path. Saving a model costs about a second, so every model is built once per test session into a private cache
directory and copied from there.

`tf.saved_model.save` marks every signature `tensorflow/serving/predict`; the classify and regress signatures get
their method names by rewriting the SignatureDefs in saved_model.pb afterwards, which `tf.saved_model.load` and TF
Serving both accept.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Callable

PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"

_cache_root: str | None = None
_built: dict[str, str] = {}


def _cache_dir() -> str:
    global _cache_root
    if _cache_root is None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        _cache_root = tempfile.mkdtemp(prefix="smserve-tf-models-")
        atexit.register(shutil.rmtree, _cache_root, True)
    return _cache_root


def _install(parent: str | os.PathLike, model_name: str, build: Callable[[str], None]) -> str:
    """Build once into the cache (key: model name), then copy the base path under `parent`."""
    if model_name not in _built:
        source = os.path.join(_cache_dir(), model_name)
        build(source)
        _built[model_name] = source
    destination = os.path.join(os.fspath(parent), model_name)
    shutil.copytree(_built[model_name], destination, dirs_exist_ok=True)
    return destination


def set_method_names(export_dir: str, methods: dict[str, str]) -> None:
    """Rewrite SignatureDef.method_name in saved_model.pb (tf.saved_model.save always writes predict)."""
    from tensorflow.core.protobuf import saved_model_pb2

    path = os.path.join(export_dir, "saved_model.pb")
    saved_model = saved_model_pb2.SavedModel()
    with open(path, "rb") as handle:
        saved_model.ParseFromString(handle.read())
    for meta_graph in saved_model.meta_graphs:
        for key, method in methods.items():
            meta_graph.signature_def[key].method_name = method
    with open(path, "wb") as handle:
        handle.write(saved_model.SerializeToString())


def _save(module, export_dir: str, signatures: dict, methods: dict[str, str] | None = None) -> None:
    import tensorflow as tf

    tf.saved_model.save(module, export_dir, signatures=signatures)
    if methods:
        set_method_names(export_dir, methods)


def _half_plus(offset: float, with_regress: bool):
    import tensorflow as tf

    class HalfPlus(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = tf.Variable(0.5, name="a")
            self.b = tf.Variable(offset, name="b")

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def predict(self, x):
            return {"y": self.a * x + self.b}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
        def regress(self, inputs):
            features = tf.io.parse_example(inputs, {"x": tf.io.FixedLenFeature([1], tf.float32)})
            return {"outputs": tf.reshape(self.a * features["x"] + self.b, [-1])}

    module = HalfPlus()
    signatures = {"serving_default": module.predict}
    methods = {}
    if with_regress:
        signatures[REGRESS_METHOD] = module.regress
        methods[REGRESS_METHOD] = REGRESS_METHOD
    return module, signatures, methods


def half_plus_three(parent: str | os.PathLike) -> str:
    """y = 0.5x + 3: input `x` (float32 [None]) -> `y`; versions 00000123 and 00000124 plus a hidden `.00000111`;
    signature `tensorflow/serving/regress` (input `inputs`: serialized tf.Example with float feature `x`, output
    `outputs`). Returns `<parent>/half_plus_three`."""

    def build(base: str) -> None:
        module, signatures, methods = _half_plus(3.0, with_regress=True)
        first = os.path.join(base, "00000123")
        _save(module, first, signatures, methods)
        shutil.copytree(first, os.path.join(base, "00000124"))
        shutil.copytree(first, os.path.join(base, ".00000111"))

    return _install(parent, "half_plus_three", build)


def half_plus_two(parent: str | os.PathLike) -> str:
    """y = 0.5x + 2 (input `x`, output `y`), version 123. Returns `<parent>/half_plus_two`."""

    def build(base: str) -> None:
        module, signatures, methods = _half_plus(2.0, with_regress=False)
        _save(module, os.path.join(base, "123"), signatures, methods)

    return _install(parent, "half_plus_two", build)


def arithmetic(parent: str | os.PathLike) -> str:
    """Two inputs `a`, `b` (float32 [None]) -> `sum`, `product`, `quotient` (a / b), version 1: several named
    tensors both ways, and exact float32 results such as 0.1 and 1/3. Returns `<parent>/arithmetic`."""
    import tensorflow as tf

    class Arithmetic(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="a"),
                                      tf.TensorSpec([None], tf.float32, name="b")])
        def predict(self, a, b):
            return {"sum": a + b, "product": a * b, "quotient": a / b}

    def build(base: str) -> None:
        module = Arithmetic()
        _save(module, os.path.join(base, "1"), {"serving_default": module.predict})

    return _install(parent, "arithmetic", build)


def strings(parent: str | os.PathLike) -> str:
    """Input `text` (string [None]) -> `upper` (string), `img_bytes` (text + b"\\xff\\x00", returned as b64
    because of its name) and `length` (int32), version 1. Returns `<parent>/strings`."""
    import tensorflow as tf

    class Strings(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
        def predict(self, text):
            return {"upper": tf.strings.upper(text),
                    "img_bytes": tf.strings.join([text, tf.fill(tf.shape(text), b"\xff\x00")]),
                    "length": tf.strings.length(text)}

    def build(base: str) -> None:
        module = Strings()
        _save(module, os.path.join(base, "1"), {"serving_default": module.predict})

    return _install(parent, "strings", build)


def integers(parent: str | os.PathLike) -> str:
    """Inputs `i32` (int32), `i64` (int64), `flag` (bool), all [None] -> `i32_doubled` (int32), `i64_plus_one`
    (int64), `flag_not` (bool), `i64_third` (float64 i64 / 3), version 1. Returns `<parent>/integers`."""
    import tensorflow as tf

    class Integers(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.int32, name="i32"),
                                      tf.TensorSpec([None], tf.int64, name="i64"),
                                      tf.TensorSpec([None], tf.bool, name="flag")])
        def predict(self, i32, i64, flag):
            return {"i32_doubled": i32 * 2, "i64_plus_one": i64 + 1, "flag_not": tf.logical_not(flag),
                    "i64_third": tf.cast(i64, tf.float64) / 3.0}

    def build(base: str) -> None:
        module = Integers()
        _save(module, os.path.join(base, "1"), {"serving_default": module.predict})

    return _install(parent, "integers", build)


def classifier(parent: str | os.PathLike) -> str:
    """`serving_default` is a classify signature: input `inputs` (serialized tf.Example, float feature `x`) ->
    `classes` ["negative", "positive"] and `scores` [1 - p, p] with p = sigmoid(x), version 1.
    Returns `<parent>/classifier`."""
    import tensorflow as tf

    class Classifier(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
        def classify(self, inputs):
            features = tf.io.parse_example(inputs, {"x": tf.io.FixedLenFeature([1], tf.float32)})
            positive = tf.sigmoid(features["x"])
            scores = tf.concat([1.0 - positive, positive], axis=1)
            classes = tf.tile(tf.constant([["negative", "positive"]]), [tf.shape(inputs)[0], 1])
            return {"classes": classes, "scores": scores}

    def build(base: str) -> None:
        module = Classifier()
        _save(module, os.path.join(base, "1"), {"serving_default": module.classify},
              {"serving_default": CLASSIFY_METHOD})

    return _install(parent, "classifier", build)


ALL_BUILDERS = {"half_plus_three": half_plus_three, "half_plus_two": half_plus_two, "arithmetic": arithmetic,
                "strings": strings, "integers": integers, "classifier": classifier}
