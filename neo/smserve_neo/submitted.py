"""Where a Neo user script comes from (neo.md §2): `SAGEMAKER_SUBMIT_DIRECTORY` as an S3 archive, a local
directory or `file://` URL, or a local archive; else the model's `code/` folder (core layout rules).

AWS's BYOM handler downloads the S3 archive and extracts it blindly; here extraction refuses members that
would land outside the folder, and an archive must hold exactly one script unless SAGEMAKER_PROGRAM names
one, so the wrong file is never imported silently.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlparse

from smserve import layout as layout_mod
from smserve.archive import ArchiveError, extract
from smserve.errors import StartupError

log = logging.getLogger("smserve.neo")


def _s3_download(url: str, into: Path, region: str | None) -> Path:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    parsed = urlparse(url)
    bucket, key = parsed.netloc, parsed.path.lstrip("/")
    if not bucket or not key:
        raise StartupError(f"SAGEMAKER_SUBMIT_DIRECTORY={url} is not an s3://bucket/key URL of a .tar.gz")
    target = into / "sourcedir.tar.gz"
    try:
        boto3.session.Session(region_name=region).client("s3").download_file(bucket, key, str(target))
    except (BotoCoreError, ClientError) as exc:
        raise StartupError(f"SAGEMAKER_SUBMIT_DIRECTORY={url} could not be downloaded: {exc}; check the URL and "
                           f"that the container's role may read it (s3:GetObject)") from None
    log.info("downloaded %s (%d bytes)", url, target.stat().st_size)
    return target


def _script_in(folder: Path, program: str, explicit: bool, origin: str) -> tuple[Path, Path]:
    """(script, sys.path entry) inside an extracted archive: SAGEMAKER_PROGRAM when set, else the only .py."""
    if explicit:
        hit = layout_mod.candidate(folder, program)
        if hit is None:
            matches = sorted(folder.rglob(Path(program).name))
            if len(matches) != 1:
                raise StartupError(f"SAGEMAKER_PROGRAM={program} is not a member of {origin}")
            return matches[0], matches[0].parent
        return hit[0], hit[2]
    scripts = sorted(p for p in folder.rglob("*.py") if p.is_file())
    if not scripts:
        raise StartupError(f"{origin} contains no *.py file: pack the script with neo_preprocess/neo_postprocess "
                           f"into it")
    if len(scripts) > 1:
        names = ", ".join(str(p.relative_to(folder)) for p in scripts)
        raise StartupError(f"{origin} contains more than one *.py file ({len(scripts)} found: {names}): keep one, "
                           f"or set SAGEMAKER_PROGRAM to the one to run")
    return scripts[0], scripts[0].parent


def _from_archive(archive: Path, origin: str, into: Path, program: str, explicit: bool) -> tuple[Path, Path, Path]:
    folder = into / "code"
    folder.mkdir(parents=True, exist_ok=True)
    try:
        extract(archive, folder)
    except ArchiveError as exc:
        raise StartupError(f"SAGEMAKER_SUBMIT_DIRECTORY: {exc}") from None
    script, search_dir = _script_in(folder, program, explicit, origin)
    return folder, script, search_dir


def resolve(settings, submit_root: Path, region: str | None, descend: bool) -> layout_mod.Layout:
    """The core layout, with the script taken from SAGEMAKER_SUBMIT_DIRECTORY first (neo.md §2 order)."""
    base = layout_mod.resolve(settings.model_dir, settings.program, False, None, descend)
    where = settings.submit_directory
    if not where:
        if settings.program_explicit and base.module is None:
            raise StartupError(f"SAGEMAKER_PROGRAM={settings.program} was not found; searched: "
                               f"{', '.join(base.searched)}. Fix the name or put the file in code/ of the model")
        return base
    parsed = urlparse(where)
    program, explicit = settings.program, settings.program_explicit
    if parsed.scheme == "s3":
        submit_root.mkdir(parents=True, exist_ok=True)
        archive = _s3_download(where, submit_root, region)
        code_dir, script, search_dir = _from_archive(archive, where, submit_root, program, explicit)
    elif parsed.scheme in ("", "file"):
        local = Path(parsed.path if parsed.scheme == "file" else where)
        if not local.is_absolute():
            raise StartupError(f"SAGEMAKER_SUBMIT_DIRECTORY={where} must be an absolute path, a file:// URL or an "
                               f"s3:// URL")
        if local.is_file() and local.name.endswith((".tar.gz", ".tgz")):
            code_dir, script, search_dir = _from_archive(local, str(local), submit_root, program, explicit)
        elif local.is_dir():
            hit = layout_mod.candidate(local, program)
            if hit is None:
                if explicit:
                    raise StartupError(f"SAGEMAKER_PROGRAM={program} was not found in SAGEMAKER_SUBMIT_DIRECTORY="
                                       f"{where}; fix the name or the directory")
                log.info("SAGEMAKER_SUBMIT_DIRECTORY=%s has no %s; looking in the model's code/", where, program)
                return base
            code_dir, script, search_dir = local, hit[0], hit[2]
        else:
            raise StartupError(f"SAGEMAKER_SUBMIT_DIRECTORY={where} is neither a directory nor a .tar.gz archive")
    else:
        raise StartupError(f"SAGEMAKER_SUBMIT_DIRECTORY={where}: unsupported scheme {parsed.scheme!r}; use s3://, "
                           f"file:// or an absolute path")
    name = script.stem if search_dir == script.parent else ".".join(
        script.relative_to(search_dir).with_suffix("").parts)
    module = layout_mod.UserModule(name=name, path=script, search_dir=search_dir,
                                   defined=layout_mod.defined_names(script))
    requirements = next((p for p in (code_dir / "requirements.txt", script.parent / "requirements.txt")
                         if p.is_file()), None)
    lib_dir = code_dir / "lib"
    return replace(base, code_dir=code_dir, lib_dir=lib_dir if lib_dir.is_dir() else None, module=module,
                   requirements=requirements or base.requirements,
                   searched=[f"SAGEMAKER_SUBMIT_DIRECTORY={where}", *base.searched])
