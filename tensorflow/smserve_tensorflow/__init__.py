"""The TensorFlow family (spec tensorflow.md), skeleton: the folder, distribution and entry point exist so that
the family is found and named like the others; its backend, handlers and image row arrive with the TensorFlow
family issue. Until then a server asked to run it stops at startup (exit status 2) with one
line saying so."""

from __future__ import annotations

from smserve.errors import FamilyError
from smserve.families import Family


class TensorFlowFamily(Family):
    name = "tensorflow"
    display_name = "TensorFlow Serving"
    framework_distribution = "tensorflow-cpu"

    def __init__(self) -> None:
        raise FamilyError("the TensorFlow family is not implemented in this smserve release (skeleton only); "
                          "serve TensorFlow models with a release that ships the smserve-tensorflow image")
