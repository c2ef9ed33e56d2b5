"""Start the MXNet benchmark peer: sagemaker-mxnet-inference 1.5.5 (sagemaker-inference 1.6.1) on Multi Model
Server 1.1.8, loopback only. Run with the peer venv:
``.venv/peer-mxnet/bin/python bench/peer_mxnet/serve.py --model-dir D --port N --run-dir R``.

Same relocations as bench/peer_mms/serve.py (config file and logs in the run directory, 127.0.0.1 addresses,
the model copied to $SAGEMAKER_BASE_DIR/model); everything else is the unmodified AWS MXNet serving path:
``sagemaker_mxnet_serving_container.serving`` sets the MXNET_*/OMP thread variables and starts MMS with the
toolkit's handler service. AWS needs an importable user module even for the default model_fn, so
SAGEMAKER_PROGRAM defaults to inference.py and the model's code/ directory is put on PYTHONPATH (as the
AWS image's environment does).
"""
import argparse
import os
import shutil
import sys
import tempfile


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--run-dir", default=None)
    args = ap.parse_args()

    run_dir = args.run_dir or tempfile.mkdtemp(prefix="peer-mxnet-")
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
    os.environ.setdefault("SAGEMAKER_PROGRAM", "inference.py")
    os.environ["MMS_INFERENCE_ADDRESS"] = addr
    os.environ["MMS_MANAGEMENT_ADDRESS"] = addr
    os.environ["LOG_LOCATION"] = logs
    os.environ["METRICS_LOCATION"] = logs
    code = os.path.join(model_dst, "code")
    os.environ["PYTHONPATH"] = code + (":" + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else "")
    os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    os.chdir(run_dir)

    # Import after SAGEMAKER_BASE_DIR is set: sagemaker_inference.environment reads it at import time.
    from sagemaker_inference import model_server
    from sagemaker_mxnet_serving_container import serving

    model_server.MMS_CONFIG_FILE = os.path.join(run_dir, "sagemaker-mms.properties")
    orig = model_server._generate_mms_config_properties

    def loopback_properties(*a, **kw):
        return orig(*a, **kw).replace("0.0.0.0", "127.0.0.1")

    model_server._generate_mms_config_properties = loopback_properties
    serving.main()


if __name__ == "__main__":
    main()
