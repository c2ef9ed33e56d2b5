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
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import peer_env  # noqa: E402  (bench/peer_env.py)


def main():
    args = peer_env.parse_args(extra=(("--handler-service", "bench_handler_service"),))
    run_dir = peer_env.relocate(args, "peer-mms-", lambda model_dst: HERE)
    sys.path.insert(0, HERE)
    model_server = peer_env.loopback_config(run_dir)
    model_server.start_model_server(handler_service=args.handler_service)


if __name__ == "__main__":
    main()
