"""In-process predict-time micro-benchmark, run with the same venv as the server under test.

Usage: python bench/predict_time.py MODEL_KIND MODEL_DIR BODY [N]
  noop: imports MODEL_DIR/code/inference.py, model = model_fn(dir), data = input_fn(BODY), and times
        predict_fn(data, model) -- the user's model call;
  mlp:  torch.jit.load(MODEL_DIR/model.pt), x = float tensor of BODY, times model(x) under no_grad --
        what the default predict_fn does.
Prints JSON: p50/p90/p99/mean in microseconds (perf_counter around the call only).
Thread count: torch is limited to the threads each server gives a worker (--threads).
"""
import importlib.util
import json
import os
import sys

from proc import time_calls


def main():
    kind, model_dir, body = sys.argv[1], sys.argv[2], sys.argv[3]
    n = int(sys.argv[4]) if len(sys.argv) > 4 else 20000
    threads = int(os.environ.get("BENCH_PREDICT_THREADS", "0"))
    if kind == "noop":
        spec = importlib.util.spec_from_file_location("bench_user_inference", os.path.join(model_dir, "code", "inference.py"))
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        model = mod.model_fn(model_dir)
        data = mod.input_fn(body, "application/json")

        def call():
            return mod.predict_fn(data, model)
    else:
        import torch

        if threads:
            torch.set_num_threads(threads)
        model = torch.jit.load(os.path.join(model_dir, "model.pt"), map_location="cpu").eval()
        x = torch.tensor(json.loads(body), dtype=torch.float32)

        def call():
            with torch.no_grad():
                return model(x)

    print(json.dumps({**time_calls(call, n), "threads": threads or None}))


if __name__ == "__main__":
    main()
