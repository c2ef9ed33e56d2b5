"""Framework families: the contract (`Family`) and how the core finds the one to serve.

Each family is its own distribution (`smserve-<name>`, package `smserve_<name>`, in the repository's `<name>/`
folder) and an image holds exactly one. The static map below is the fast, deterministic path: resolving a
family costs one import and no metadata scan, which keeps discovery off the cold-start path. Families outside
the map are found through the `smserve.families` entry points, scanned only for such names.

Importing this package, or a family declaration, never imports a framework.
"""

from __future__ import annotations

import importlib.util
from importlib import import_module, metadata

from ..errors import FamilyError
from .base import Family, FamilyEnv, FamilyOption, Handler

ENTRY_POINT_GROUP = "smserve.families"

FAMILIES: dict[str, str] = {
    "pytorch": "smserve_pytorch:PyTorchFamily",
    "mxnet": "smserve_mxnet:MXNetFamily",
    "tensorflow": "smserve_tensorflow:TensorFlowFamily",
    "neo": "smserve_neo:NeoFamily",
}

__all__ = ["ENTRY_POINT_GROUP", "FAMILIES", "Family", "FamilyEnv", "FamilyOption", "Handler", "distribution",
           "installed_families", "resolve_family"]


def distribution(name: str) -> str:
    """The pip distribution that provides family `name` (what to install, what an error names)."""
    return f"smserve-{name}"


def _package(name: str) -> str:
    return FAMILIES[name].partition(":")[0]


def _extra_entry_points() -> dict[str, metadata.EntryPoint]:
    """Installed `smserve.families` entry points whose names the static map does not know."""
    return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP) if ep.name not in FAMILIES}


def installed_families() -> tuple[str, ...]:
    """Names of the families whose package is importable here: the map first, entry points only if it has none."""
    found = tuple(name for name in FAMILIES if importlib.util.find_spec(_package(name)) is not None)
    return found or tuple(sorted(_extra_entry_points()))


def resolve_family(name: str | None, source: str = "SMSERVE_FAMILY") -> Family:
    """The family to serve. `name` None: the only installed family; several or none stop startup with one line
    that says what to do. `source` names where `name` came from (the variable or the CLI option)."""
    if name is None:
        installed = installed_families()
        if len(installed) == 1:
            return _load(installed[0], source)
        if not installed:
            raise FamilyError("no smserve family is installed: install one of "
                              + ", ".join(distribution(n) for n in FAMILIES)
                              + " (e.g. pip install ./pytorch from the smserve repository)")
        raise FamilyError(f"several families are installed ({', '.join(installed)}): set SMSERVE_FAMILY "
                          f"(or serve --family) to one of them")
    return _load(name.strip().lower(), source)


def _load(name: str, source: str) -> Family:
    target = FAMILIES.get(name)
    if target is None:
        entry_point = _extra_entry_points().get(name)
        if entry_point is None:
            known = sorted({*FAMILIES, *_extra_entry_points()})
            raise FamilyError(f"invalid value for {source}: {name!r}; accepted: {' or '.join(known)}")
        return entry_point.load()()
    module_name, _, class_name = target.partition(":")
    try:
        module = import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        installed = [n for n in installed_families() if n != name]
        hint = f"; installed here: {', '.join(installed)}" if installed else ""
        raise FamilyError(f"family {name} is not installed (distribution {distribution(name)}): install it, "
                          f"or set {source} to an installed family{hint}") from None
    return getattr(module, class_name)()
