"""The TensorFlow family on a multi-model endpoint (spec tensorflow.md §12): AWS's TF image's bodies and texts, the
model layout a load accepts, and the backend ports each model gets. Runs in the multi-model front, which never
imports TensorFlow; each loaded model's own server then plans its backends on these ports (backends.py)."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Iterable, Mapping

from smserve.errors import BadRequest, InsufficientMemory, ServingError
from smserve.mme.dialect import MmeDialect
from smserve.mme.registry import Model, Reservation
from smserve.mme.upstream import Upstream, UpstreamClosed

from . import discovery
from .attributes import MODEL_NAME_PATTERN

log = logging.getLogger("smserve.mme")
STATUS_TIMEOUT = 5.0  # seconds for a backend's model status answer


def not_loaded_text(name: str, deleting: bool = False) -> str:
    """AWS's 404 text (its DELETE answer has no full stop)."""
    return f"Model {name} is not loaded yet" + ("" if deleting else ".")


def with_aws_text(error: ServingError, text: str) -> ServingError:
    """The core's error, its body carrying AWS's text as `error` as well (core §11.1)."""
    error.body_fields = {"error": text}
    return error


class TensorFlowDialect(MmeDialect):
    # ------------------------------------------------------------ errors
    def missing_model_name(self) -> ServingError:
        return with_aws_text(super().missing_model_name(), "Invocation request does not contain model name.")

    def check_name(self, value: object) -> str:
        """The core's rules, and TF Serving's: the name is the backend's model name and part of its URL paths."""
        if isinstance(value, str) and value and not MODEL_NAME_PATTERN.fullmatch(value):
            raise with_aws_text(BadRequest(f"model_name {value!r} cannot be a TF Serving model name: 1-255 letters, "
                                           f"digits, '.', '_' or '-', starting with a letter or digit"),
                                f"invalid model_name: '{value}'")
        return super().check_name(value)

    def url_not_found(self, url: str, name: str) -> ServingError:
        return with_aws_text(super().url_not_found(url, name), f"Could not find valid base path {url} for servable "
                                                               f"{name}")

    def already_loaded(self, name: str, loading: bool) -> ServingError:
        return with_aws_text(super().already_loaded(name, loading), f"Model {name} is already loaded.")

    def not_loaded(self, name: str, deleting: bool = False) -> ServingError:
        return with_aws_text(super().not_loaded(name, deleting), not_loaded_text(name, deleting))

    def out_of_memory(self, message: str) -> ServingError:
        return with_aws_text(super().out_of_memory(message), "Memory exhausted: not enough memory to start TFS "
                                                             "instance")

    def error_fields(self, error: ServingError) -> dict:
        """Every error body of this family carries AWS's `error`: its own text where AWS has one, else the core's."""
        return error.body_fields or {"error": error.message}

    # ------------------------------------------------------------ loads
    def load_timeout(self) -> tuple[float, str]:
        wait = self.settings.family_options["SAGEMAKER_TFS_WAIT_TIME_SECONDS"]
        return super().load_timeout() if wait is None else (wait, "SAGEMAKER_TFS_WAIT_TIME_SECONDS")

    def reserve(self, name: str, url: Path, given_url: str, reserved: Iterable[Reservation]) -> Reservation:
        """A SavedModel base path at `url` (404 without one) and free ports for the model's backends (507 when the
        range has none left); the ports are free again as soon as the model is gone, or its load failed."""
        base, warning = discovery.multi_model_base(url)
        if base is None:
            raise self.url_not_found(given_url, name)
        count = self.settings.family_options["SAGEMAKER_TFS_INSTANCE_COUNT"]
        taken = {port for r in reserved if r.detail for i in r.detail for port in (i.rest_port, i.grpc_port)}
        instances = discovery.free_multi_model_ports(count, self.settings.safe_port_range, taken)
        if instances is None:
            low, high = self.settings.safe_port_range
            raise with_aws_text(InsufficientMemory(f"no free ports left for model {name!r}'s {count} backend(s) in "
                                                   f"SAGEMAKER_SAFE_PORT_RANGE {low}-{high}: unload a model and "
                                                   f"retry"),
                                "Memory exhausted: no available ports to load the model.")
        if warning:
            log.warning("model %s: %s", name, warning)
        return Reservation({"SMSERVE_TF_BACKEND_PORTS": discovery.backend_ports_text(instances)}, instances)

    async def gone(self, model: Model) -> bool:
        """A backend that refuses connections died, and is not restarted (§12); a busy one still accepts them."""
        for instance in model.reservation.detail:
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", instance.rest_port),
                                                   STATUS_TIMEOUT)
            except ConnectionRefusedError:
                return True
            except (OSError, asyncio.TimeoutError):
                continue
            writer.close()
        return False

    # ------------------------------------------------------------ bodies
    def loaded_body(self, name: str, workers: int, reservation: Reservation) -> object:
        rest = ",".join(str(i.rest_port) for i in reservation.detail)
        grpc = ",".join(str(i.grpc_port) for i in reservation.detail)
        return {"success": f"Successfully loaded model {name}, listening on rest port {rest} and grpc port {grpc}."}

    def unloaded_body(self, name: str) -> object:
        return {"success": f"Successfully unloaded model {name}."}

    async def list_body(self, models: Mapping[str, Model], query: Mapping[str, list[str]]) -> object:
        """Each model's status as its backend reports it; a model whose backend no longer answers is on its way
        out (its server stops, tensorflow.md §12) and is left out."""
        statuses = await asyncio.gather(*(_model_status(model) for model in models.values()))
        return {name: status for name, status in zip(models, statuses) if status is not None}

    async def describe_body(self, model: Model) -> object:
        status = await _model_status(model)
        if status is None:
            raise self.not_loaded(model.name)
        return {"model": status}


async def _model_status(model: Model) -> object | None:
    """TF Serving's `GET /v1/models/<name>` answer from the model's first backend; None when it does not answer."""
    backend = Upstream(("127.0.0.1", model.reservation.detail[0].rest_port), pool_size=0)
    try:
        answer = await asyncio.wait_for(backend.request("GET", f"/v1/models/{model.name}", [], b""), STATUS_TIMEOUT)
        return json.loads(answer.body)
    except (OSError, UpstreamClosed, asyncio.TimeoutError, ValueError) as exc:
        log.warning("model %s: its backend did not report its status (%s)", model.name, exc)
        return None
