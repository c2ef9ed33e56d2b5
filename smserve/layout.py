"""Model directory, code directory and user module resolution, with the layout diagnostics of spec core §5.

Runs in the supervisor before any worker loads: it reads the file system and parses the user module's
source (never imports it), so every diagnostic is one precise line with the fix.
"""

from __future__ import annotations

import ast
import logging
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from .errors import StartupError

log = logging.getLogger("smserve.layout")

HOOK_NAMES = ("pre_model_fn", "model_fn", "model_warmup_fn", "input_fn", "predict_fn", "output_fn", "transform_fn")


@dataclass(frozen=True)
class UserModule:
    name: str  # importable name ("inference", "pkg.handler")
    path: Path  # the .py file
    search_dir: Path  # directory that must be on sys.path for `name` to import
    defined: tuple[str, ...]  # top-level names the source defines, from the AST (for diagnostics only)


@dataclass
class Layout:
    model_dir: Path
    code_dir: Path
    lib_dir: Path | None
    module: UserModule | None
    requirements: Path | None
    searched: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def import_paths(self) -> tuple[list[str], list[str]]:
        """(prepend, append) for sys.path: code dir, code/lib, the module's dir; model dir last (spec core §5.3)."""
        prepend = [str(self.code_dir)]
        if self.lib_dir:
            prepend.append(str(self.lib_dir))
        if self.module and str(self.module.search_dir) not in prepend and self.module.search_dir != self.model_dir:
            prepend.insert(0, str(self.module.search_dir))
        return prepend, [str(self.model_dir)]


def defined_names(path: Path) -> tuple[str, ...]:
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (SyntaxError, ValueError, OSError):
        return ()  # the worker's real import reports the error with a full traceback
    names: list[str] = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, ast.Assign):
            names.extend(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.ImportFrom):
            names.extend(alias.asname or alias.name for alias in node.names)
    return tuple(names)


def candidate(directory: Path, program: str) -> tuple[Path, str, Path] | None:
    """Where `program` would live under `directory`: (file, import name, sys.path entry) if it exists."""
    if "/" in program:  # a path relative to the directory [smserve improvement]
        target = directory / (program if program.endswith(".py") else program + ".py")
        return (target, target.stem, target.parent) if target.is_file() else None
    stem = program[:-3] if program.endswith(".py") else program
    target = directory.joinpath(*stem.split(".")).with_suffix(".py")
    if target.is_file():
        return target, stem, directory
    return None


def _descend(model_dir: Path, descend_single_directory: bool, warnings: list[str]) -> Path:
    if not descend_single_directory or not model_dir.is_dir():
        return model_dir
    entries = [p for p in model_dir.iterdir() if not p.name.startswith(".")]
    if len(entries) == 1 and entries[0].is_dir() and entries[0].name != "code":
        inner = entries[0]
        warnings.append(
            f"model archive has a single top-level directory {inner.name!r}; serving from {inner}. "
            f"Re-pack with the files at the root: tar -C {inner.name} -czf model.tar.gz .")
        return inner
    return model_dir


def resolve(model_dir: Path, program: str, program_explicit: bool, submit_directory: str | None,
            descend_single_directory: bool = True) -> Layout:
    warnings: list[str] = []
    if not model_dir.is_dir():
        raise StartupError(f"model directory {model_dir} does not exist; mount the model at /opt/ml/model "
                           f"or pass --model-dir")
    model_dir = _descend(model_dir.resolve(), descend_single_directory, warnings)
    code_dir = model_dir / "code"
    lib_dir = code_dir / "lib"
    searched: list[str] = []

    found = None
    searched.append(str(code_dir / program))
    hit = candidate(code_dir, program) if code_dir.is_dir() else None
    if hit:
        found = hit
    if not found and submit_directory:
        parsed = urlparse(submit_directory)
        local = Path(parsed.path) if parsed.scheme == "file" else Path(submit_directory)
        if parsed.scheme in ("", "file") and local.is_absolute():
            searched.append(str(local / program))
            hit = candidate(local, program) if local.is_dir() else None
            if hit:
                found = hit
    if not found:
        searched.append(str(model_dir / program))
        hit = candidate(model_dir, program)
        if hit:
            found = hit
            warnings.append(f"user module found at the model dir root ({hit[0]}); move it to code/{hit[0].name} "
                            f"(the SageMaker convention)")
    if not found and program_explicit:
        raise StartupError(f"SAGEMAKER_PROGRAM={program} was not found; searched: {', '.join(searched)}. "
                           f"Fix the name or put the file in code/ of the model archive")

    module = None
    if found:
        path, name, search_dir = found
        module = UserModule(name=name, path=path, search_dir=search_dir, defined=defined_names(path))

    requirements = code_dir / "requirements.txt"
    if (model_dir / "requirements.txt").is_file() and not requirements.is_file():
        warnings.append(f"{model_dir / 'requirements.txt'} is not installed: move it to code/requirements.txt")
    for nested in sorted(model_dir.glob("*.tar.gz")):
        if _extracted_beside(nested):
            continue
        warnings.append(f"nested archive {nested.name} in the model dir is never extracted; "
                        f"put its contents at the archive root instead")

    return Layout(model_dir=model_dir, code_dir=code_dir, lib_dir=lib_dir if lib_dir.is_dir() else None,
                  module=module, requirements=requirements if requirements.is_file() else None,
                  searched=searched, warnings=warnings)


def _extracted_beside(archive: Path) -> bool:
    """True when the archive's first member already exists next to it: the SageMaker Python SDK's local mode
    extracts model.tar.gz into the folder it mounts and leaves the archive there, which is not a mistake.
    Only the first header is read, so a multi-GB archive costs nothing at startup."""
    try:
        with tarfile.open(archive, mode="r|gz") as stream:
            first = stream.next()
    except (OSError, tarfile.TarError, EOFError):
        return False
    if first is None:
        return False
    member = Path(first.name)
    if not member.parts or member.is_absolute() or ".." in member.parts:
        return False
    return (archive.parent / member).exists()


def check_static(layout: Layout, expected_files: str, hook_names: tuple[str, ...] = HOOK_NAMES) -> None:
    """Errors visible without importing user code: transform_fn conflicts, nothing to load."""
    defined = set(layout.module.defined) if layout.module else set()
    if "transform_fn" in defined:
        conflicts = [h for h in ("input_fn", "predict_fn", "output_fn") if h in defined]
        if conflicts:
            raise StartupError(f"{layout.module.path}: transform_fn cannot be combined with {', '.join(conflicts)}; "
                               f"keep transform_fn alone or remove it")
    model_files = [p for p in layout.model_dir.iterdir() if p.name != "code" and not p.name.startswith(".")]
    if not model_files and "model_fn" not in defined:
        raise StartupError(f"model directory {layout.model_dir} holds no model files and no model_fn is defined; "
                           f"the default model_fn expects {expected_files}")
