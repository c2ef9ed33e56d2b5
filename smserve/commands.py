"""The `smserve` command group (click). `serve` itself is parsed in cli.py without click."""

from __future__ import annotations

import click

from . import __version__
from .cli import ENVIRONMENT_HELP, SERVE_HELP, serve_command


@click.group(help="SageMaker-compatible inference server.\n\n\b" + ENVIRONMENT_HELP)
@click.version_option(__version__, prog_name="smserve")
def group() -> None:
    pass


@group.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                                 "help_option_names": []},
               help=SERVE_HELP + " Options: --model-dir, --port, --host, --family; `smserve serve --help` has "
                                 "the details.")
@click.pass_context
def serve(ctx: click.Context) -> None:
    ctx.exit(serve_command(ctx.args))
