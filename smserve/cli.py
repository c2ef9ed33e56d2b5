"""Command line: `smserve serve` (also installed as `serve`, the name SageMaker runs)."""

from __future__ import annotations

import sys

import click

from . import __version__
from .errors import ConfigError

ENVIRONMENT_HELP = """

\b
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
"""


@click.group(help="SageMaker-compatible inference server." + ENVIRONMENT_HELP)
@click.version_option(__version__, prog_name="smserve")
def main() -> None:
    pass


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
              help="Start the server (what `docker run IMAGE serve` runs)." + ENVIRONMENT_HELP)
@click.option("--model-dir", type=click.Path(file_okay=False), help="Model directory (default $SAGEMAKER_BASE_DIR/model).")
@click.option("--port", type=int, help="Listening port (default $SAGEMAKER_BIND_TO_PORT or 8080).")
@click.option("--host", help="Bind only this address, e.g. 127.0.0.1 for local runs (default: all interfaces).")
@click.option("--family", help="Framework family (default $SMSERVE_FAMILY, else the only installed family).")
@click.pass_context
def serve(ctx: click.Context, model_dir: str | None, port: int | None, host: str | None,
          family: str | None) -> None:
    from . import logs
    from .config import load_settings
    from .supervisor import serve as run_server

    try:
        settings = load_settings(model_dir=model_dir, port=port, family=family, host=host)
    except ConfigError as exc:
        click.echo(f"smserve: {exc}", err=True)
        sys.exit(exc.exit_status)
    logs.configure(settings)
    if ctx.args:
        import logging

        logging.getLogger("smserve.cli").warning("ignoring extra arguments after 'serve': %s", " ".join(ctx.args))
    sys.exit(run_server(settings))


def serve_entry() -> None:
    """The `serve` executable: same as `smserve serve`."""
    main(["serve", *sys.argv[1:]])
