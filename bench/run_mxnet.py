#!/usr/bin/env python3
"""MXNet row of the benchmark (`make bench-mxnet`): smserve's MXNet family (.venv/mxnet) vs the AWS MXNet
inference toolkit on Multi Model Server with the versions the AWS MXNet 1.9 image pins
(sagemaker-mxnet-inference 1.5.5, sagemaker-inference 1.6.1, multi-model-server 1.1.8, mxnet 1.9.1,
numpy 1.23.5; .venv/peer-mxnet, bench/peer_mxnet/).

Same method, cells, knobs and report as bench/run.py (it is imported and reused); only the venvs, the peer
start command and the models differ:
  noop    bench/models/noop_mxnet (model_fn + transform_fn doubling the list; the AWS MXNet toolkit rejects
          the four-hook no-op because model_fn returns neither a Module nor a Block, mxnet.md §6)
  module  Module checkpoint of a Gluon MLP 4-64-64-2 (model-symbol.json, model-0000.params,
          model-shapes.json) served by the default handlers; the AWS peer also gets the empty
          code/inference.py it requires. predict = one Module forward + asnumpy (bench/mxnet_model.py).
Results: bench/results/<UTC stamp>-mxnet.json.
"""
import glob
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as bench  # noqa: E402

ROOT = bench.ROOT
bench.SMSERVE_VENV = os.path.join(ROOT, ".venv", "mxnet")
bench.PEER_VENV = os.path.join(ROOT, ".venv", "peer-mxnet")
PEER_REQUIREMENTS = os.path.join(bench.BENCH, "peer_mxnet", "requirements.txt")
HELPER = os.path.join(bench.BENCH, "mxnet_model.py")
bench.MODELS = {
    "noop": dict(bench.MODELS["noop"], desc="code/inference.py: model_fn + transform_fn (doubles the list)"),
    "module": {"body": "[[0.5, -1.25, 2.0, 3.5]]", "expected": None,
               "desc": "Module checkpoint (Gluon MLP 4-64-64-2 export + model-shapes.json), default handlers"},
}
os.environ.setdefault("BENCH_MODELS", "noop,module")


def ensure_setup(servers):
    if os.environ.get("BENCH_NO_SETUP") == "1":
        return
    if "peer" in servers:
        subprocess.run([os.path.join(ROOT, "scripts", "bench-peer-setup.sh")], check=True)  # java, wrk
        stamp = os.path.join(bench.PEER_VENV, ".bench-peer-installed")
        if not os.path.exists(stamp) or os.path.getmtime(PEER_REQUIREMENTS) > os.path.getmtime(stamp):
            if not os.path.exists(os.path.join(bench.PEER_VENV, "bin", "python")):
                subprocess.run(["python3.11", "-m", "venv", bench.PEER_VENV], check=True)
            subprocess.run([os.path.join(bench.PEER_VENV, "bin", "pip"), "install", "-q",
                            "--disable-pip-version-check", "-r", PEER_REQUIREMENTS], check=True)
            open(stamp, "w").close()
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: run scripts/bench-peer-setup.sh")
    if "smserve" in servers:
        subprocess.run(["make", "venv-mxnet"], cwd=ROOT, check=True)


def build_models(tmp):
    noop = os.path.join(tmp, "models", "noop")
    shutil.copytree(os.path.join(bench.BENCH, "models", "noop_mxnet"), noop)
    module = os.path.join(tmp, "models", "module")
    out = bench.run_cmd([bench.python_of("smserve"), HELPER, "build", module, bench.MODELS["module"]["body"]])
    bench.MODELS["module"]["expected"] = __import__("json").loads(out.strip().splitlines()[-1])["expected"]
    return {"noop": noop, "module": module}


def predict_time(server, model, model_dir):
    mode, n = ("noop", "20000") if model == "noop" else ("predict", "5000")
    cmd = [bench.python_of(server), HELPER, mode, model_dir, bench.MODELS[model]["body"], n]
    return __import__("json").loads(bench.run_cmd(cmd).strip().splitlines()[-1])


class Server(bench.Server):
    """bench.Server with the MXNet family for smserve and the AWS MXNet toolkit for the peer."""

    def __init__(self, server, model, model_dir, workers, port, run_dir):
        self.server, self.model, self.workers, self.port = server, model, workers, port
        self.run_dir = run_dir
        os.makedirs(run_dir, exist_ok=True)
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("SMSERVE_", "SAGEMAKER_", "MMS_", "OMP_", "MKL_", "MXNET_"))}
        env["SAGEMAKER_MODEL_SERVER_WORKERS"] = str(workers)
        if server == "smserve":
            env.update(SMSERVE_FAMILY="mxnet", SMSERVE_SKIP_REQUIREMENTS="true", SMSERVE_ACCESS_LOG="true")
            cmd = [os.path.join(bench.SMSERVE_VENV, "bin", "smserve"), "serve", "--model-dir", model_dir,
                   "--port", str(port), "--host", "127.0.0.1"]
        else:
            cmd = [bench.python_of("peer"), os.path.join(bench.BENCH, "peer_mxnet", "serve.py"), "--model-dir",
                   model_dir, "--port", str(port), "--run-dir", run_dir]
        self.log_path = os.path.join(run_dir, "server.log")
        self.log_file = open(self.log_path, "wb")
        self.t_start = bench.time.monotonic()
        self.proc = subprocess.Popen(cmd, cwd=run_dir, env=env, stdout=self.log_file, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        self.sid = self.proc.pid


bench.PEER_DESCRIPTION = ("sagemaker-mxnet-inference 1.5.5 + sagemaker-inference 1.6.1 on multi-model-server 1.1.8 "
                          "(.venv/peer-mxnet); smserve is the MXNet family (.venv/mxnet)")
bench.ensure_setup = ensure_setup
bench.build_models = build_models
bench.predict_time = predict_time
bench.Server = Server


def main():
    pattern = os.path.join(bench.BENCH, "results", "[0-9]" * 4 + "-*Z.json")  # bench.main's <UTC stamp>.json only
    before = set(glob.glob(pattern))
    status = bench.main()
    for path in sorted(set(glob.glob(pattern)) - before):
        with open(path) as f:
            mine = bench.SMSERVE_VENV in f.read()  # another harness may write results meanwhile
        if mine:
            os.replace(path, path[:-5] + "-mxnet.json")
            print("renamed to %s" % os.path.relpath(path[:-5] + "-mxnet.json", ROOT))
    return status


if __name__ == "__main__":
    sys.exit(main())
