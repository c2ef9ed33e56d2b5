"""Framework families. Importing this package (or a family declaration) never imports a framework."""

from __future__ import annotations

from .base import Family

_FAMILIES = {
    "pytorch": "smserve.families.pytorch:PyTorchFamily",
    "mxnet": "smserve.families.mxnet:MXNetFamily",
}


def known_families() -> tuple[str, ...]:
    return tuple(_FAMILIES)


def get_family(name: str) -> Family:
    from importlib import import_module

    from ..errors import ConfigError

    target = _FAMILIES.get(name.strip().lower())
    if target is None:
        raise ConfigError("SMSERVE_FAMILY", name, " or ".join(_FAMILIES))
    module_name, _, class_name = target.partition(":")
    return getattr(import_module(module_name), class_name)()
