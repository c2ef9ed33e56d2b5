"""Shared set-up of the two MMS benchmark peers (bench/peer_mms, bench/peer_mxnet): the same relocations of a
stock AWS toolkit container onto a loopback-only run directory. Imported by path from each peer's serve.py,
which runs in the peer's own venv."""
import argparse
import os
import shutil
import sys
import tempfile


def parse_args(extra=()):
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--run-dir", default=None)
    for flag, default in extra:
        ap.add_argument(flag, default=default)
    return ap.parse_args()


def relocate(args, prefix, pythonpath):
    """Copy the model to $SAGEMAKER_BASE_DIR/model in the run dir, bind 127.0.0.1, keep logs in the run dir.
    `pythonpath(model_dst)` names the directory put first on PYTHONPATH. Returns the run directory."""
    run_dir = args.run_dir or tempfile.mkdtemp(prefix=prefix)
    os.makedirs(run_dir, exist_ok=True)
    base = os.path.join(run_dir, "ml")
    model_dst = os.path.join(base, "model")
    if os.path.exists(model_dst):
        shutil.rmtree(model_dst)
    shutil.copytree(args.model_dir, model_dst)
    logs = os.path.join(run_dir, "logs")
    os.makedirs(logs, exist_ok=True)

    addr = "http://127.0.0.1:%d" % args.port
    os.environ["SAGEMAKER_BASE_DIR"] = base
    os.environ["SAGEMAKER_BIND_TO_PORT"] = str(args.port)
    os.environ["MMS_INFERENCE_ADDRESS"] = addr
    os.environ["MMS_MANAGEMENT_ADDRESS"] = addr
    os.environ["LOG_LOCATION"] = logs
    os.environ["METRICS_LOCATION"] = logs
    first = pythonpath(model_dst)
    os.environ["PYTHONPATH"] = first + (":" + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else "")
    # multi-model-server is started by name: make the venv's bin directory win.
    os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    os.chdir(run_dir)
    return run_dir


def loopback_config(run_dir):
    """Keep the toolkit's MMS config file out of /etc and its addresses on 127.0.0.1. Import only after
    relocate(): sagemaker_inference.environment reads SAGEMAKER_BASE_DIR at import time."""
    from sagemaker_inference import model_server

    model_server.MMS_CONFIG_FILE = os.path.join(run_dir, "sagemaker-mms.properties")
    generate = model_server._generate_mms_config_properties

    def loopback_properties(*a, **kw):
        return generate(*a, **kw).replace("0.0.0.0", "127.0.0.1")

    model_server._generate_mms_config_properties = loopback_properties
    return model_server
