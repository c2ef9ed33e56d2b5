"""Start the benchmark peer: sagemaker-inference 1.10.1 on Multi Model Server 1.1.11, loopback only.

Run with the peer venv: ``.venv/peer-mms/bin/python bench/peer_mms/serve.py --model-dir D --port N``.
Environment: SAGEMAKER_MODEL_SERVER_WORKERS as for the real toolkit.

What it changes relative to a stock toolkit container, and why:
- ``model_server.MMS_CONFIG_FILE`` is hard-coded to /etc/sagemaker-mms.properties; it is
  redirected to a file in the run directory (``--run-dir``), so nothing is written under /etc.
- The toolkit writes ``inference_address``/``management_address`` as ``http://0.0.0.0:PORT``.
  The generated properties are rewritten to 127.0.0.1, and because the toolkit's default
  config sets ``enable_envvars_config=true`` the same addresses are also given through
  MMS_INFERENCE_ADDRESS / MMS_MANAGEMENT_ADDRESS, so MMS binds 127.0.0.1 only.
- The toolkit serves ``$SAGEMAKER_BASE_DIR/model``; the model directory is copied there.
- MMS writes its logs to ``$LOG_LOCATION`` (default ./logs); both point into the run directory.
Everything else (the Java frontend, the worker protocol, the Transformer, the access log,
``start_model_server``) is the unmodified toolkit path.
"""
import argparse
import os
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--run-dir", default=None)
    ap.add_argument("--handler-service", default="bench_handler_service")
    args = ap.parse_args()

    run_dir = args.run_dir or tempfile.mkdtemp(prefix="peer-mms-")
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
    os.environ["PYTHONPATH"] = HERE + (":" + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else "")
    # multi-model-server is started by name: make the venv's bin directory win.
    os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    sys.path.insert(0, HERE)
    os.chdir(run_dir)

    # Import after SAGEMAKER_BASE_DIR is set: sagemaker_inference.environment reads it at import time.
    from sagemaker_inference import model_server

    model_server.MMS_CONFIG_FILE = os.path.join(run_dir, "sagemaker-mms.properties")
    orig = model_server._generate_mms_config_properties

    def loopback_properties(env, handler_service=None):
        return orig(env, handler_service).replace("0.0.0.0", "127.0.0.1")

    model_server._generate_mms_config_properties = loopback_properties
    model_server.start_model_server(handler_service=args.handler_service)


if __name__ == "__main__":
    main()
