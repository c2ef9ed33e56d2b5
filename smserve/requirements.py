"""Install code/requirements.txt before any worker starts, without touching the image (spec core §6,
docs/security.md "Requirements isolation").

pip runs inside an overlay: a virtual environment in the server's writable run directory whose interpreter
also sees the image's site-packages (one `site.addsitedir` line in a .pth file). pip therefore skips what the
image already satisfies, installs what the user asks for into the overlay, and never uninstalls the image's copy
of a package the user pins differently: pip does not uninstall outside the environment it runs in. That works as
non-root and with a read-only root filesystem, and the image stays as built. Workers put the overlay first on
sys.path before their first import of a third-party module, so the user's versions win there (numpy included);
the supervisor imports nothing a requirement could replace (tests/contract/test_core_requirements.py).
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import shutil
import site
import subprocess
import sys
import sysconfig
import venv
from collections import deque
from pathlib import Path

from .config import Settings
from .errors import RequirementsError, StartupError

log = logging.getLogger("smserve.requirements")
SECRET = re.compile(r"(https?://)([^/@\s]+)@")


IMAGE_SITE_PTH = "_smserve_image_site.pth"


def site_dir(prefix: Path) -> Path:
    """The overlay's site-packages, where the user's requirements go."""
    return Path(sysconfig.get_path("purelib", vars={"base": str(prefix), "platbase": str(prefix)}))


def overlay_python(prefix: Path) -> Path:
    return prefix / "bin" / "python"


def create_overlay(prefix: Path) -> None:
    """A virtual environment at `prefix` (no pip of its own) that also sees the image's packages, after its own."""
    venv.EnvBuilder(with_pip=False, symlinks=True, clear=True).create(prefix)
    candidates = [*sys.path, *site.getsitepackages()]  # sys.path first: it has the system site of a venv with one
    image_sites = list(dict.fromkeys(
        path for path in candidates if path.endswith(("site-packages", "dist-packages")) and os.path.isdir(path)
        and not Path(path).resolve().is_relative_to(prefix.resolve())))
    site_dir(prefix).mkdir(parents=True, exist_ok=True)
    (site_dir(prefix) / IMAGE_SITE_PTH).write_text(
        f"import site; list(map(site.addsitedir, {image_sites!r}))\n")


def activate(site_dirs: tuple[str, ...]) -> None:
    """Put the overlay first on sys.path, with what its .pth files add (a worker calls this right after the
    fork, before it imports uvicorn, numpy or the framework)."""
    for directory in reversed(site_dirs):
        before = list(sys.path)
        site.addsitedir(directory)  # appends the directory and its .pth entries
        added = [path for path in sys.path if path not in before]
        sys.path[:] = added + before


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


def cache_prefix(requirements: Path, cache: Path, constraints: tuple[str, ...]) -> Path:
    """The overlay of a requirements file in a shared cache (a multi-model endpoint's models, core §13.4): keyed
    by the SHA-256 of its content and the pins kept, so identical files are installed once."""
    digest = hashlib.sha256(requirements.read_bytes() + "\n".join(constraints).encode()).hexdigest()
    return cache / digest[:32]


COMPLETE = ".smserve-complete"


def install(requirements: Path, prefix: Path, settings: Settings, constraints: tuple[str, ...] = (),
            constraint_reason: str = "") -> None:
    """Into `prefix`; a prefix in the shared cache is installed by one server at a time and reused once done."""
    if settings.requirements_cache is None or not prefix.is_relative_to(settings.requirements_cache):
        return _install(requirements, prefix, settings, constraints, constraint_reason)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    with open(prefix.with_name(prefix.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another model with the same file may be installing it right now
        if (prefix / COMPLETE).is_file():
            log.info("requirements %s: reusing %s (same content installed for an earlier model)", requirements,
                     site_dir(prefix))
            return
        try:
            _install(requirements, prefix, settings, constraints, constraint_reason)
        except BaseException:
            shutil.rmtree(prefix, ignore_errors=True)
            raise
        (prefix / COMPLETE).write_text("")


def _install(requirements: Path, prefix: Path, settings: Settings, constraints: tuple[str, ...] = (),
             constraint_reason: str = "") -> None:
    create_overlay(prefix)
    command = [str(overlay_python(prefix)), "-m", "pip", "install", "--no-input", "--disable-pip-version-check",
               "--no-warn-script-location", "-r", str(requirements)]
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
    refuse_unloadable_libraries(prefix)
    log.info("installed %s into %s", requirements, site_dir(prefix))


def refuse_unloadable_libraries(prefix: Path) -> None:
    """Compiled modules on a filesystem mounted noexec (docker's `--tmpfs /tmp` is) cannot be loaded: the worker
    would fail with "failed to map segment from shared object". Say so at install time, with the fix."""
    if not os.statvfs(prefix).f_flag & os.ST_NOEXEC:
        return
    compiled = next((path for path in site_dir(prefix).rglob("*.so*") if path.is_file()), None)
    if compiled is not None:
        raise RequirementsError(
            f"code/requirements.txt installed compiled modules ({compiled.name} among them) into {prefix}, on a "
            f"filesystem mounted noexec, where they cannot be loaded; mount it with exec (docker run --tmpfs "
            f"/tmp:exec) or point TMPDIR at a writable directory that allows it")
