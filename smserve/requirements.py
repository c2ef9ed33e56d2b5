"""Install code/requirements.txt into a writable prefix before any worker loads (spec core §6)."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import sysconfig
from collections import deque
from pathlib import Path

from .config import Settings
from .errors import RequirementsError, StartupError

log = logging.getLogger("smserve.requirements")
SECRET = re.compile(r"(https?://)([^/@\s]+)@")


def site_dir(prefix: Path) -> Path:
    """Where `pip install --prefix` puts modules for this interpreter."""
    return Path(sysconfig.get_path("purelib", vars={"base": str(prefix), "platbase": str(prefix)}))


def mask(text: str) -> str:
    return SECRET.sub(r"\1****@", text)


def codeartifact_index(arn: str, region: str | None) -> str:
    """Index URL with a fresh authorization token for the repository named by CA_REPOSITORY_ARN."""
    try:  # arn:aws:codeartifact:<region>:<account>:repository/<domain>/<repository>
        _, _, _, arn_region, account, resource = arn.split(":", 5)
        _, domain, repository = resource.split("/", 2)
    except ValueError:
        raise StartupError(f"CA_REPOSITORY_ARN={arn!r} is not a CodeArtifact repository ARN "
                           f"(arn:aws:codeartifact:<region>:<account>:repository/<domain>/<repository>)") from None
    try:
        import boto3
    except ImportError:
        raise StartupError("CA_REPOSITORY_ARN is set but boto3 is not installed in this image") from None
    client = boto3.client("codeartifact", region_name=region or arn_region)
    token = client.get_authorization_token(domain=domain, domainOwner=account, durationSeconds=900)["authorizationToken"]
    endpoint = client.get_repository_endpoint(domain=domain, domainOwner=account, repository=repository,
                                              format="pypi")["repositoryEndpoint"]
    scheme, rest = endpoint.split("://", 1)
    return f"{scheme}://aws:{token}@{rest.rstrip('/')}/simple/"


def install(requirements: Path, prefix: Path, settings: Settings, constraints: tuple[str, ...] = (),
            constraint_reason: str = "") -> None:
    prefix.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "install", "--no-input", "--disable-pip-version-check",
               "--no-warn-script-location", "--prefix", str(prefix), "-r", str(requirements)]
    if constraints:
        constraint_file = prefix / "smserve-constraints.txt"
        constraint_file.write_text("\n".join(constraints) + "\n")
        command += ["-c", str(constraint_file)]
    if settings.ca_repository_arn:
        command += ["--index-url", codeartifact_index(settings.ca_repository_arn, settings.region)]
    log.info("installing %s: %s", requirements, mask(" ".join(command)))
    tail: deque[str] = deque(maxlen=200)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    for line in process.stdout:
        tail.append(mask(line.rstrip()))
        log.debug("pip: %s", tail[-1])
    status = process.wait()
    if status != 0:
        output = "\n".join(tail)
        hint = f"; {constraint_reason}" if constraints and constraint_reason else ""
        log.error("pip failed with status %s: %s\n%s", status, mask(" ".join(command)), output)
        raise RequirementsError(f"installing {requirements} failed (pip exit status {status}){hint}; "
                                f"fix code/requirements.txt or set SMSERVE_SKIP_REQUIREMENTS=true when "
                                f"dependencies are baked into the image")
    log.info("installed %s into %s", requirements, site_dir(prefix))
