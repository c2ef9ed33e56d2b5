"""The Neo family (spec neo.md), skeleton: the folder, distribution and entry point exist so that the family is
found and named like the others; the DLR runtime, neo_preprocess/neo_postprocess and the app defaults arrive
with the Neo family issue. Until then a server asked to run it stops at startup (exit status 2)
with one line saying so."""

from __future__ import annotations

from smserve.errors import FamilyError
from smserve.families import Family


class NeoFamily(Family):
    name = "neo"
    display_name = "Neo (DLR)"
    framework_distribution = "dlr"

    def __init__(self) -> None:
        raise FamilyError("the Neo family is not implemented in this smserve release (skeleton only); "
                          "serve Neo-compiled models with a release that ships the smserve-neo image")
