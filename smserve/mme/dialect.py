"""What a multi-model endpoint says (spec core §13.2): the bodies of its /models answers, the texts of its errors,
and what a family sets aside for each load. The front (front.py) routes, loads and unloads; every text a client
reads comes from its family's dialect (Family.mme_dialect), so a family whose AWS image answers in other words
(TensorFlow, tensorflow.md §12) keeps the one front. This default is the MMS/TorchServe dialect of PyTorch, MXNet
and Neo: errors as the core writes them, `{"status": ...}` bodies, paged listings."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..config import Settings
from ..errors import BadRequest, Conflict, InsufficientMemory, ModelNotFound, ServingError
from .registry import NOTHING_RESERVED, Model, Reservation, check_name, page
from .servers import rss_bytes


class MmeDialect:
    def __init__(self, family: Any, settings: Settings):
        self.family = family
        self.settings = settings

    # ------------------------------------------------------------ errors
    def missing_model_name(self) -> ServingError:
        return BadRequest("this is a multi-model endpoint: name the model with ?model_name=<name>, or post to "
                          "/models/<name>/invoke")

    def check_name(self, value: object) -> str:
        return check_name(value)

    def url_not_found(self, url: str, name: str) -> ServingError:
        return ModelNotFound(f"url {url!r} does not exist or is not a folder")

    def already_loaded(self, name: str, loading: bool) -> ServingError:
        return Conflict(f"model {name!r} is already {'loading' if loading else 'loaded'}; DELETE /models/{name} "
                        f"first to load it again")

    def not_loaded(self, name: str, deleting: bool = False) -> ServingError:
        return ModelNotFound(f"model {name!r} is not loaded; load it with POST /models")

    def out_of_memory(self, message: str) -> ServingError:
        return InsufficientMemory(message)

    def error_fields(self, error: ServingError) -> dict | None:
        """Fields added to the core's error body (core §11.1)."""
        return error.body_fields

    # ------------------------------------------------------------ loads
    def load_timeout(self) -> tuple[float, str]:
        """(seconds a load may take, the variable that set them)."""
        return self.settings.startup_timeout, "SAGEMAKER_STARTUP_TIMEOUT"

    def reserve(self, name: str, url: Path, given_url: str, reserved: Iterable[Reservation]) -> Reservation:
        """Check the model folder and set aside what its server needs, given what the other loaded and loading
        models hold; raises the load's error answer. Nothing to set aside here."""
        return NOTHING_RESERVED

    async def gone(self, model: Model) -> bool:
        """Whether a registered model can no longer serve although its server still runs (asked on its 404 and 503
        answers and on a load of its name; the front then unregisters it). Here its server's exit tells."""
        return False

    # ------------------------------------------------------------ bodies
    def loaded_body(self, name: str, workers: int, reservation: Reservation) -> object:
        return {"status": self.family.mme_loaded_status.format(name=name, workers=workers)}

    def unloaded_body(self, name: str) -> object:
        return {"status": f'Model "{name}" unregistered'}

    async def list_body(self, models: Mapping[str, Model], query: Mapping[str, list[str]]) -> object:
        names, token = page(list(models), (query.get("limit") or [None])[0],
                            (query.get("next_page_token") or [None])[0])
        answer: dict = {"models": [{"modelName": n, "modelUrl": models[n].url} for n in names]}
        if token:
            answer["nextPageToken"] = token
        return answer

    async def describe_body(self, model: Model) -> object:
        workers = [{"id": str(pid), "status": "READY", "gpu": model.server.gpu is not None, "memoryUsage": rss_bytes(pid)}
                   for pid in model.server.pids()]
        return [{"modelName": model.name, "modelUrl": model.url, "modelVersion": "1.0", "workers": workers,
                 "loadedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(model.loaded_at)),
                 "lastUsed": round(time.monotonic() - model.last_used, 3)}]
