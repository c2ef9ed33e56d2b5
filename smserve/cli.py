"""Command line: `smserve serve` (also installed as `serve`, the name SageMaker runs).

`serve` is parsed with the standard library's argparse: the server process must import nothing that a user's
code/requirements.txt could replace before it installs them (requirements.py), and click is a package users pin.
Every other command is click's (commands.py).
"""

from __future__ import annotations

import argparse
import sys

from .errors import ConfigError

ENVIRONMENT_HELP = """
Configuration comes from environment variables (spec core §12), among them:
  SAGEMAKER_BIND_TO_PORT (8080)        listening port
  SAGEMAKER_PROGRAM (inference.py)     user module in <model dir>/code
  SAGEMAKER_MODEL_SERVER_WORKERS       worker processes (default: GPUs, else CPUs from the cgroup quota)
  SAGEMAKER_MODEL_SERVER_TIMEOUT(_SECONDS)  request deadline in seconds (60; 600 with SAGEMAKER_BATCH)
  SAGEMAKER_STARTUP_TIMEOUT (600)      seconds until every worker must be ready
  SAGEMAKER_MAX_PAYLOAD_IN_MB          request limit (default 6,553,500 bytes; TS_/MMS_MAX_REQUEST_SIZE)
  SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT (application/json)
  SAGEMAKER_BATCH, SAGEMAKER_BATCH_STRATEGY, SAGEMAKER_MAX_CONCURRENT_TRANSFORMS
  SMSERVE_FAMILY (the one installed; pytorch|mxnet|...), SMSERVE_VARIANT (cpu|gpu|inf1)
  SMSERVE_LOG_LEVEL, SMSERVE_LOG_FORMAT (text|json), SMSERVE_ACCESS_LOG, SMSERVE_LOG_PING, SMSERVE_DEBUG
  SMSERVE_METRICS, SMSERVE_WORKER_THREADS (1), SMSERVE_MAX_QUEUE (100), SMSERVE_GRACEFUL_TIMEOUT (25)
  SMSERVE_HUNG_GRACE (30), SMSERVE_MODEL_LOAD_RETRIES (0), SMSERVE_SKIP_REQUIREMENTS, SMSERVE_GPU_PINNING
  SMSERVE_RESPONSE_MAX_BYTES (0 = no cap), SMSERVE_TORCH_COMPILE, SMSERVE_TORCH_COMPILE_SHAPE
  SMSERVE_HEADER_TIMEOUT (10)          seconds from a request's first byte to the end of its headers (408)
  SMSERVE_IDLE_TIMEOUT (75)            seconds a connection may stay open with no request in progress
  SMSERVE_MAX_HEADER_BYTES (65536)     request line + headers (431 above)
  SMSERVE_MAX_CONNECTIONS              per worker (default: open-file limit - 64, at most 10000)
  SMSERVE_DECODE_FACTOR (16)           decoding a body may allocate at most this many times its size (413)
  SMSERVE_PRELOAD_FRAMEWORK (true)     import the framework once in the zygote and fork workers from it
  NEURON_CORE_HOST_TOTAL, NEURONCORE_GROUP_SIZES (1), NEURON_RT_NUM_CORES (TF)
                                       inf1: workers default to NEURON_CORE_HOST_TOTAL; NeuronCores are checked
"""

SERVE_HELP = "Start the server (what `docker run IMAGE serve` runs)."


def serve_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smserve serve", description=SERVE_HELP, epilog=ENVIRONMENT_HELP,
                                     formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    parser.add_argument("--model-dir", help="Model directory (default $SAGEMAKER_BASE_DIR/model).")
    parser.add_argument("--port", type=int, help="Listening port (default $SAGEMAKER_BIND_TO_PORT or 8080).")
    parser.add_argument("--host", help="Bind only this address, e.g. 127.0.0.1 for local runs "
                                       "(default: all interfaces).")
    parser.add_argument("--family", help="Framework family (default $SMSERVE_FAMILY, else the only installed "
                                         "family).")
    return parser


def serve_command(args: list[str]) -> int:
    """Run the server until it stops; its exit status. Extra arguments are ignored with one warning (core §1.1)."""
    from . import logs
    from .config import load_settings
    from .supervisor import serve as run_server

    options, extra = serve_parser().parse_known_args(args)
    try:
        settings = load_settings(model_dir=options.model_dir, port=options.port, family=options.family,
                                 host=options.host)
    except ConfigError as exc:
        print(f"smserve: {exc}", file=sys.stderr)
        return exc.exit_status
    logs.configure(settings)
    if extra:
        import logging

        logging.getLogger("smserve.cli").warning("ignoring extra arguments after 'serve': %s", " ".join(extra))
    return run_server(settings)


def main(argv: list[str] | None = None) -> None:
    """`smserve`: `serve` goes straight to the server; every other command through click."""
    args = sys.argv[1:] if argv is None else list(argv)
    if args[:1] == ["serve"]:
        sys.exit(serve_command(args[1:]))
    from .commands import group

    group(args, prog_name="smserve")


def serve_entry() -> None:
    """The `serve` executable: same as `smserve serve`."""
    sys.exit(serve_command(sys.argv[1:]))

