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
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import peer_env  # noqa: E402  (bench/peer_env.py)


def main():
    args = peer_env.parse_args()
    os.environ.setdefault("SAGEMAKER_PROGRAM", "inference.py")
    run_dir = peer_env.relocate(args, "peer-mxnet-", lambda model_dst: os.path.join(model_dst, "code"))
    peer_env.loopback_config(run_dir)
    from sagemaker_mxnet_serving_container import serving

    serving.main()


if __name__ == "__main__":
    main()
