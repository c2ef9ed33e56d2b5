"""TF Serving custom attributes (spec tensorflow.md §6): which model, version and method a request targets.

The values end up in a backend URL path, so they are validated strictly: a header must not be able to
redirect a request to an arbitrary path of the backend."""

from __future__ import annotations

import re
from dataclasses import dataclass

from smserve.errors import BadRequest

# Same pattern AWS applies to the raw X-Amzn-SageMaker-Custom-Attributes header.
_ATTRIBUTE = re.compile(r"tfs-[a-z-]+=[^,]+")
MODEL_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")
_VERSION = re.compile(r"[0-9]+")
METHODS = ("predict", "classify", "regress")
DEFAULT_METHOD = "predict"


@dataclass(frozen=True, slots=True)
class TfsAttributes:
    """The tfs-* attributes of one request; None where the header does not set them."""

    model_name: str | None = None
    model_version: str | None = None
    method: str | None = None


NO_ATTRIBUTES = TfsAttributes()


def parse_custom_attributes(raw: str | None) -> TfsAttributes:
    """Read tfs-model-name, tfs-model-version and tfs-method; other keys are ignored, bad values are a 400."""
    if not raw or "tfs-" not in raw:
        return NO_ATTRIBUTES
    found: dict[str, str] = {}
    for match in _ATTRIBUTE.findall(raw):
        key, _, value = match.partition("=")
        found[key] = value.strip()  # later occurrences win, as in a dict built from the matches
    name = found.get("tfs-model-name")
    version = found.get("tfs-model-version")
    method = found.get("tfs-method")
    if name is not None and not MODEL_NAME_PATTERN.fullmatch(name):
        raise BadRequest("invalid tfs-model-name")
    if version is not None and not _VERSION.fullmatch(version):
        raise BadRequest("invalid tfs-model-version")
    if method is not None and method not in METHODS:
        raise BadRequest("invalid tfs-method")
    if name is None and version is None and method is None:
        return NO_ATTRIBUTES
    return TfsAttributes(name, version, method)


def backend_path(model_name: str, version: str | None, method: str | None) -> str:
    """The TF Serving REST path a request goes to: /v1/models/<name>[/versions/<v>]:<method>."""
    path = f"/v1/models/{model_name}"
    if version:
        path += f"/versions/{version}"
    return f"{path}:{method or DEFAULT_METHOD}"
