"""TensorFlow benchmark model helper, run with .venv/tensorflow (the driver, bench/run_tensorflow.py, runs under the
host's python3 and never imports TensorFlow).

  python bench/tf_model.py build DIR          write DIR/half_plus_three (the test suite's builder,
                                              tensorflow/tests/tf_models.py) and DIR/dense/1 (tf.Module MLP
                                              64 -> 256 -> 256 -> 10, float32, seeded: built here, no weights in
                                              git); print each model's base path, one-row JSON body and the
                                              expected answer {"predictions": ...}
  python bench/tf_model.py direct BASE BODY [N]  the physical floor: the newest version's serving_default signature
                                              called in a loop, sig(x=tf.constant(rows)) plus .numpy() of every
                                              output; print p50/p90/p99/mean in us
Both print JSON on the last line.
"""
from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported

BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(1, os.path.join(os.path.dirname(BENCH), "tensorflow", "tests"))
from proc import time_calls  # noqa: E402

DENSE_SIZES = (64, 256, 256, 10)


def _dense_module():
    """A Keras-free MLP: Keras is not in the family's lock, and the backend only needs the signature."""
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)

    class Dense(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            pairs = list(zip(DENSE_SIZES, DENSE_SIZES[1:]))
            self.w = [tf.Variable((rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32)) for a, b in pairs]
            self.b = [tf.Variable((rng.standard_normal(b) * 0.1).astype(np.float32)) for _, b in pairs]

        @tf.function(input_signature=[tf.TensorSpec([None, DENSE_SIZES[0]], tf.float32, name="x")])
        def serve(self, x):
            for i, (w, b) in enumerate(zip(self.w, self.b)):
                x = tf.matmul(x, w) + b
                if i < len(self.w) - 1:
                    x = tf.nn.relu(x)
            return {"y": x}

    return Dense()


def build(out_dir: str) -> None:
    import numpy as np
    import tensorflow as tf
    import tf_models

    models = {"half_plus_three": {"base": tf_models.half_plus_three(out_dir),
                                  "body": {"instances": [1.0]}, "expected": {"predictions": [3.5]}}}
    module = _dense_module()
    base = os.path.join(out_dir, "dense")
    tf.saved_model.save(module, os.path.join(base, "1"), signatures={"serving_default": module.serve})
    row = np.round(np.random.default_rng(1).standard_normal((1, DENSE_SIZES[0])), 4)  # short JSON numbers
    expected = module.serve(tf.constant(row.astype(np.float32)))["y"].numpy()
    models["dense"] = {"base": base, "body": {"instances": row.tolist()},
                       "expected": {"predictions": expected.tolist()}}
    for model in models.values():
        model["body"] = json.dumps(model["body"], separators=(",", ":"))
    print(json.dumps(models))


def direct(base: str, body: str, n: int) -> None:
    import numpy as np
    import tensorflow as tf

    version = max((d for d in os.listdir(base) if d.isdigit()), key=int)  # what the backend serves by default
    signature = tf.saved_model.load(os.path.join(base, version)).signatures["serving_default"]
    (name,) = signature.structured_input_signature[1]
    rows = np.asarray(json.loads(body)["instances"], dtype=np.float32)

    def call():
        return {key: value.numpy() for key, value in signature(**{name: tf.constant(rows)}).items()}

    print(json.dumps({**time_calls(call, n), "tensorflow": tf.__version__, "version": version}))


if __name__ == "__main__":
    if sys.argv[1] == "build":
        build(sys.argv[2])
    else:
        direct(sys.argv[2], sys.argv[3], int(sys.argv[4]) if len(sys.argv) > 4 else 2000)
