"""MXNet benchmark model helper, run with an MXNet venv (.venv/mxnet or .venv/peer-mxnet).

  python bench/mxnet_model.py build DIR BODY      write the Module checkpoint (Gluon MLP 4-64-64-2 exported to
                                                   model-symbol.json / model-0000.params + model-shapes.json,
                                                   plus an empty code/inference.py, which AWS requires) and print
                                                   {"expected": <result for BODY>}
  python bench/mxnet_model.py predict DIR BODY [N] time what the default predict does per request (Module
                                                   forward of one batch + asnumpy); print p50/p90/p99/mean in us
  python bench/mxnet_model.py noop DIR BODY [N]    time the no-op handler's model call, double(data, model)
"""
import json
import os
import sys

from proc import time_calls


def build(model_dir, body):
    import mxnet as mx
    from mxnet import gluon

    mx.random.seed(1)
    net = gluon.nn.HybridSequential()
    with net.name_scope():
        net.add(gluon.nn.Dense(64, activation="relu", in_units=4), gluon.nn.Dense(64, activation="relu", in_units=64),
                gluon.nn.Dense(2, in_units=64))
    net.initialize(mx.init.Xavier())
    net.hybridize()
    x = mx.nd.array(json.loads(body))
    expected = net(x).asnumpy().tolist()
    os.makedirs(os.path.join(model_dir, "code"), exist_ok=True)
    net.export(os.path.join(model_dir, "model"), epoch=0)
    with open(os.path.join(model_dir, "model-shapes.json"), "w") as f:
        json.dump([{"name": "data", "shape": [1, 4]}], f)
    with open(os.path.join(model_dir, "code", "inference.py"), "w") as f:
        f.write("# empty: the AWS MXNet toolkit needs an importable entry module even for the defaults\n")
    print(json.dumps({"expected": expected}))


def noop(model_dir, body, n):
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_noop", os.path.join(model_dir, "code", "inference.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model, data = module.model_fn(model_dir), json.loads(body)
    timed(lambda: module.double(data, model), n)


def predict(model_dir, body, n):
    import mxnet as mx

    sym, args, aux = mx.model.load_checkpoint(os.path.join(model_dir, "model"), 0)
    module = mx.mod.Module(sym, context=mx.cpu(), data_names=["data"], label_names=None)
    module.bind(for_training=False, data_shapes=[("data", (1, 4))])
    module.set_params(args, aux, allow_missing=True)
    batch = mx.io.DataBatch([mx.nd.array(json.loads(body))])

    def call():
        module.forward(batch, is_train=False)
        return module.get_outputs()[0].asnumpy()

    timed(call, n)


def timed(call, n):
    print(json.dumps(time_calls(call, n)))


if __name__ == "__main__":
    if sys.argv[1] == "build":
        build(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "noop":
        noop(sys.argv[2], sys.argv[3], int(sys.argv[4]) if len(sys.argv) > 4 else 20000)
    else:
        predict(sys.argv[2], sys.argv[3], int(sys.argv[4]) if len(sys.argv) > 4 else 5000)
