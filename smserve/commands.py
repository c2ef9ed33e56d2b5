"""The `smserve` command group (click): package and check model archives. `serve` itself is parsed in cli.py
without click."""

from __future__ import annotations

import sys
from pathlib import Path

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


@group.command(help="Build the model.tar.gz SageMaker expects from a model folder: model files at the root, "
                    "code/inference.py and code/requirements.txt, reproducible bytes. Layouts the server would only "
                    "warn about are fixed, and each move is printed; ambiguous ones are refused with the fix.")
@click.argument("src", type=click.Path(path_type=Path))
@click.option("-o", "--output", "out", type=click.Path(path_type=Path), default=Path("model.tar.gz"),
              show_default=True, help="Archive to write (never inside SRC).")
@click.option("--program", default="inference.py", show_default=True,
              help="The user module's file name (SAGEMAKER_PROGRAM).")
def package(src: Path, out: Path, program: str) -> None:
    from .archive import ArchiveError, package as build

    try:
        result = build(src, out, program)
    except ArchiveError as exc:
        raise click.ClickException(str(exc)) from None
    for move in result.moves:
        click.echo(f"moved   {move}")
    click.echo(f"wrote   {result.archive} ({len(result.members)} members, {result.archive.stat().st_size} bytes)")


@group.command(help="Check a model archive or folder before deploying it: layout, requirements, the user module "
                    "and its hook signatures in the family's environment (or in IMAGE), and with --invoke one real "
                    "prediction. One line per finding; exit status 1 when any is an error.")
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--family", help="Framework family (default $SMSERVE_FAMILY, else the only installed one).")
@click.option("--image", help="Run the checks inside this family image instead of this environment.")
@click.option("--program", default="inference.py", show_default=True, help="SAGEMAKER_PROGRAM.")
@click.option("--invoke", "invoke_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Send this file to a real server as one /invocations request.")
@click.option("--content-type", help="Content-Type of the --invoke request (required with --invoke).")
@click.option("--accept", help="Accept of the --invoke request.")
@click.option("--timeout", type=float, default=300, show_default=True, help="Seconds for each step.")
def check(source: Path, family: str | None, image: str | None, program: str, invoke_file: Path | None,
          content_type: str | None, accept: str | None, timeout: float) -> None:
    from .check import ERROR, run_check
    from .config import load_settings
    from .errors import ConfigError
    from .families import resolve_family

    if invoke_file is not None and not content_type:
        raise click.UsageError("--invoke needs --content-type")
    try:
        chosen = resolve_family(load_settings(family=family).family)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    findings = run_check(source, chosen, program, image, invoke_file, content_type, accept, timeout)
    for finding in findings:
        click.echo(finding.line())
    errors = sum(1 for f in findings if f.level == ERROR)
    click.echo(f"{len(findings)} findings, {errors} errors")
    if errors:
        sys.exit(1)
