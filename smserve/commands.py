"""The `smserve` command group (click): package and check model archives. `serve` itself is parsed in cli.py
without click."""

from __future__ import annotations

import signal
import sys
import threading
import time
from pathlib import Path

import click

from . import __version__
from .archive import ArchiveError
from .cli import ENVIRONMENT_HELP, SERVE_HELP, serve_command
from .errors import ConfigError


source_argument = click.argument("source", type=click.Path(path_type=Path))
family_option = click.option("--family", help="Framework family (default $SMSERVE_FAMILY, else the only installed one).")


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
    from .archive import package as build

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
@source_argument
@family_option
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
    from .families import resolve_family

    if invoke_file is not None and not content_type:
        raise click.UsageError("--invoke needs --content-type")
    try:
        chosen = resolve_family(_family_name(family))
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    findings = run_check(source, chosen, program, image, invoke_file, content_type, accept, timeout)
    for finding in findings:
        click.echo(finding.line())
    errors = sum(1 for f in findings if f.level == ERROR)
    click.echo(f"{len(findings)} findings, {errors} errors")
    if errors:
        sys.exit(1)


@group.command(help="Serve a model archive (or folder) locally the way SageMaker runs it: the family image, the "
                    "archive at /opt/ml/model, the instance type's CPUs and memory, non-root, read-only root "
                    "filesystem. Prints the URL (boto3: endpoint_url=URL); Ctrl-C stops and removes it.")
@source_argument
@family_option
@click.option("--image", help="Image to run (default: the newest local smserve-<family> cpu image).")
@click.option("--instance-type", default="ml.m5.large", show_default=True, help="CPU and memory limits.")
@click.option("--port", type=int, default=8080, show_default=True, help="Port on 127.0.0.1 and all interfaces.")
@click.option("--env", "-e", "env", multiple=True, metavar="NAME=VALUE", help="Container environment variable.")
@click.option("--detach", is_flag=True, help="Return once ready and leave the container running.")
@click.option("--timeout", type=float, default=600, show_default=True, help="Seconds to wait for /ping 200.")
def local(source: Path, family: str | None, image: str | None, instance_type: str, port: int, env: tuple[str, ...],
          detach: bool, timeout: float) -> None:
    from . import local as local_mod

    variables = {}
    for item in env:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise click.UsageError(f"--env {item!r}: use NAME=VALUE")
        variables[name] = value
    chosen = family or (image.split("/")[-1].split(":")[0].removeprefix("smserve-") if image else None)
    try:
        if chosen is None:
            chosen = _family_name(None)
        endpoint = local_mod.start(source, image, chosen, instance_type, port, variables, timeout)
    except (local_mod.LocalError, ArchiveError, ConfigError) as exc:
        raise click.ClickException(str(exc)) from None
    for note in endpoint.notes:
        click.echo(f"note: {note}")
    click.echo(f"ready: {endpoint.url}  ({endpoint.container.name}, {endpoint.cpus:g} CPUs, "
               f"{endpoint.memory_bytes // 2**30} GiB, {instance_type})")
    click.echo(f"  curl {endpoint.url}/invocations -H 'Content-Type: application/json' -d '[[...]]'")
    click.echo(f"  boto3.client('sagemaker-runtime', endpoint_url='{endpoint.url}').invoke_endpoint("
               f"EndpointName='local', Body=..., ContentType=...)")
    if detach:
        extracted = f"; rm -r {endpoint.workdir}" if endpoint.workdir else ""
        click.echo(f"stop it with: docker rm -f {endpoint.container.name}{extracted}")
        return
    # Ctrl-C / SIGTERM only set an event: a KeyboardInterrupt raised inside the Docker SDK's log stream can be
    # swallowed there (the stream then follows forever and the endpoint never stops). The log is followed on a
    # daemon thread, which also ends the wait when the container exits.
    stop = threading.Event()
    handlers = {signum: signal.signal(signum, lambda *_: stop.set()) for signum in (signal.SIGINT, signal.SIGTERM)}

    def follow() -> None:
        try:
            for chunk in endpoint.container.logs(stream=True, follow=True, since=int(time.time())):
                click.echo(chunk.decode("utf-8", "replace"), nl=False)
        except Exception:  # noqa: BLE001 - the engine closed the stream; the endpoint is stopped below
            pass
        finally:
            stop.set()

    threading.Thread(target=follow, name="container-log", daemon=True).start()
    try:
        while not stop.wait(0.5):
            pass
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
        click.echo("stopping")
        endpoint.stop()


def _family_name(family: str | None) -> str:
    from .config import load_settings

    return load_settings(family=family).family


@group.command(help="Push an image to Amazon ECR: create the repository when missing, log the Docker engine in "
                    "with an ECR token, tag, push, and print the image URI to give SageMaker. AWS credentials "
                    "and AWS_REGION as usual; AWS_ENDPOINT_URL_ECR for a non-AWS ECR endpoint.")
@click.argument("image")
@click.option("--registry", required=True, help="<account>.dkr.ecr.<region>.amazonaws.com")
@click.option("--repository", help="Repository name (default: the image's name, e.g. smserve-pytorch).")
@click.option("--tag", help="Tag in the repository (default: the image's tag).")
@click.option("--region", help="Region of the ECR API (default: from the registry host).")
def push(image: str, registry: str, repository: str | None, tag: str | None, region: str | None) -> None:
    from .push import PushError, push as push_image

    try:
        pushed = push_image(image, registry, repository, tag, region)
    except PushError as exc:
        raise click.ClickException(str(exc)) from None
    if pushed.created_repository:
        click.echo(f"created repository {pushed.uri.rsplit(':', 1)[0]}")
    click.echo(f"pushed  {pushed.uri}" + (f" ({pushed.digest})" if pushed.digest else ""))
    click.echo(f"image URI for SageMaker: {pushed.uri}")
