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


class PrivateIndex:
    """A package index whose URL carries a credential: pip gets the URL, logs only get a placeholder."""

    PLACEHOLDER = "<CodeArtifact index from CA_REPOSITORY_ARN>"

    def __init__(self, url: str, token: str, host: str):
        self.url = url
        self._token = token
        self._anywhere_on_host = re.compile(r"\S*" + re.escape(host) + r"\S*")

    def redact(self, text: str) -> str:
        return self._anywhere_on_host.sub(self.PLACEHOLDER, text.replace(self._token, "****"))


def codeartifact_index(arn: str, region: str | None) -> PrivateIndex:
    """Index URL with a fresh authorization token for the repository named by CA_REPOSITORY_ARN."""
    try:  # arn:aws:codeartifact:<region>:<account>:repository/<domain>/<repository>
        _, _, service, arn_region, account, resource = arn.split(":", 5)
        kind, domain, repository = resource.split("/", 2)
        if service != "codeartifact" or kind != "repository" or not (account and domain and repository):
            raise ValueError(arn)
    except ValueError:
        raise StartupError(f"CA_REPOSITORY_ARN={arn!r} is not a CodeArtifact repository ARN "
                           f"(arn:aws:codeartifact:<region>:<account>:repository/<domain>/<repository>)") from None
    import boto3
    import botocore.exceptions

    try:
        client = boto3.client("codeartifact", region_name=region or arn_region)
        token = client.get_authorization_token(domain=domain, domainOwner=account,
                                               durationSeconds=900)["authorizationToken"]
        endpoint = client.get_repository_endpoint(domain=domain, domainOwner=account, repository=repository,
                                                  format="pypi")["repositoryEndpoint"]
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise RequirementsError(f"CA_REPOSITORY_ARN is set but no CodeArtifact token or endpoint could be "
                                f"obtained for {domain}/{repository}: {exc}; check the role's codeartifact:"
                                f"GetAuthorizationToken / GetRepositoryEndpoint and sts:GetServiceBearerToken "
                                f"permissions and the region") from None
    scheme, rest = endpoint.split("://", 1)
    host = rest.split("/", 1)[0]
    return PrivateIndex(f"{scheme}://aws:{token}@{rest.rstrip('/')}/simple/", token, host)


def install(requirements: Path, prefix: Path, settings: Settings, constraints: tuple[str, ...] = (),
            constraint_reason: str = "") -> None:
    prefix.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "install", "--no-input", "--disable-pip-version-check",
               "--no-warn-script-location", "--prefix", str(prefix), "-r", str(requirements)]
    if constraints:
        constraint_file = prefix / "smserve-constraints.txt"
        constraint_file.write_text("\n".join(constraints) + "\n")
        command += ["-c", str(constraint_file)]
    redact = mask
    if settings.ca_repository_arn:
        index = codeartifact_index(settings.ca_repository_arn, settings.region)
        command += ["--index-url", index.url]
        redact = lambda text: mask(index.redact(text))  # noqa: E731
    log.info("installing %s: %s", requirements, redact(" ".join(command)))
    tail: deque[str] = deque(maxlen=200)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    for line in process.stdout:
        tail.append(redact(line.rstrip()))
        log.debug("pip: %s", tail[-1])
    status = process.wait()
    if status != 0:
        output = "\n".join(tail)
        hint = f"; {constraint_reason}" if constraints and constraint_reason else ""
        log.error("pip failed with status %s: %s\n%s", status, redact(" ".join(command)), output)
        raise RequirementsError(f"installing {requirements} failed (pip exit status {status}){hint}; "
                                f"fix code/requirements.txt or set SMSERVE_SKIP_REQUIREMENTS=true when "
                                f"dependencies are baked into the image")
    log.info("installed %s into %s", requirements, site_dir(prefix))
