"""The part of `smserve check` that runs inside the family's environment (this venv, or the image):

    python -m smserve.probe --family F [--program inference.py] MODEL_DIR

Installs code/requirements.txt into a temporary overlay the way the server does, imports the user module,
binds every hook with the family's context rule, and prints one JSON line: {"findings": [[level, text], ...]}.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import shutil
import sys
import tempfile
import traceback
from pathlib import Path

from . import hooks, layout as layout_mod, requirements
from .config import load_settings
from .errors import ConfigError, StartupError
from .families import resolve_family


class _Tail(logging.Handler):
    """pip's last error lines, for the finding that says why requirements did not install."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines += [line for line in record.getMessage().splitlines() if line.startswith("ERROR")]


def _where(exc: BaseException, module_path: Path) -> str:
    """file:line of the deepest frame in the user's code, else of the deepest frame."""
    frames = traceback.extract_tb(exc.__traceback__)
    own = [f for f in frames if Path(f.filename).resolve().is_relative_to(module_path.parent.resolve())]
    frame = (own or frames or [None])[-1]
    return f"{frame.filename}:{frame.lineno}" if frame else str(module_path)


def probe(model_dir: Path, family_name: str, program: str) -> list[tuple[str, str]]:
    settings = load_settings(family=family_name, model_dir=str(model_dir))
    family = resolve_family(settings.family)
    found = layout_mod.resolve(model_dir, program, False, None, family.descend_single_directory)
    findings: list[tuple[str, str]] = []
    workdir = Path(tempfile.mkdtemp(prefix="smserve-probe-"))
    try:
        if found.requirements is not None:
            prefix, tail = workdir / "requirements", _Tail()
            logging.getLogger("smserve.requirements").addHandler(tail)
            try:
                requirements.install(found.requirements, prefix, settings, family.requirement_constraints,
                                     family.constraint_reason)
            except StartupError as exc:
                return [("ERROR", f"{exc}{': ' + ' | '.join(tail.lines[-3:]) if tail.lines else ''}")]
            requirements.activate((str(requirements.site_dir(prefix)),))
            findings.append(("OK", f"{found.requirements} installs ({family.display_name} environment)"))
        if found.module is None:
            return findings
        prepend, append = found.import_paths()
        sys.path[:0] = prepend
        sys.path.extend(append)
        try:
            module = importlib.import_module(found.module.name)
        except BaseException as exc:  # noqa: BLE001 - whatever the user's import raises is the finding
            fix = (f"; add the package that provides {exc.name!r} to code/requirements.txt"
                   if isinstance(exc, ModuleNotFoundError) else "")
            return [*findings, ("ERROR", f"importing {found.module.path} failed at {_where(exc, found.module.path)}: "
                                         f"{type(exc).__name__}: {exc}{fix}")]
        try:
            user = hooks.UserHooks.from_module(module)
            for name, fn in user.functions.items():
                hooks.bind(name, fn, family.context_rule, name in family.model_keyword_hooks)
        except StartupError as exc:
            return [*findings, ("ERROR", str(exc))]
        names = ", ".join(user.names()) or "none (the family defaults serve)"
        findings.append(("OK", f"{found.module.path} imports; hooks: {names}"))
        return findings
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m smserve.probe")
    parser.add_argument("--family", required=True)
    parser.add_argument("--program", default="inference.py")
    parser.add_argument("model_dir", type=Path)
    options = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    try:
        findings = probe(options.model_dir, options.family, options.program)
    except (ConfigError, StartupError) as exc:
        findings = [("ERROR", str(exc))]
    print(json.dumps({"findings": findings}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
