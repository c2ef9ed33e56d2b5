"""The plug-in boundary: what a framework family supplies to the serving core.

A family declares its environment variables, layout expectations and context rule (data, read by the
supervisor without importing the framework), and builds the per-worker handler (code, run in a worker
after GPU visibility and thread variables are set). Hook-function families (PyTorch, MXNet, Neo
framework style) build a `pipeline.ScriptHandler` from their defaults; TF Serving and DLR families
return their own handler with the same `load()` / `invoke()` shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable, Protocol

from ..context import InferenceRequest, InferenceResult, WorkerInfo
from ..hooks import CONTEXT_BY_ARITY, UserHooks

if TYPE_CHECKING:  # config imports this package to resolve the family; the contract never imports config
    from ..config import Settings


@dataclass(frozen=True)
class FamilyOption:
    """A family-specific variable (e.g. SMSERVE_TORCH_COMPILE), declared by the family, read by config.py."""

    variable: str
    parse: Callable[[str, str], Any]
    default: Any
    doc: str


@dataclass(frozen=True)
class FamilyEnv:
    """What a family declares about its environment; config.py does the reading."""

    legacy_prefix: str  # "TS" (TorchServe), "MMS", or "" for none: prefix of the payload/timeout/worker aliases
    worker_vars: tuple[str, ...] = ()  # family worker-count variables, after SAGEMAKER_MODEL_SERVER_WORKERS and aliases
    timeout_vars: tuple[str, ...] = ()  # family deadline variables, after SAGEMAKER_MODEL_SERVER_TIMEOUT*; the
    # largest of those set wins (AWS's TF image raises nginx's proxy timeout to gunicorn's)
    preferred_worker_vars: tuple[str, ...] = ()  # family worker-count variables that win over the core's
    thread_vars: tuple[str, ...] = ()  # predict threads per worker, before SMSERVE_WORKER_THREADS
    default_worker_threads: int = 1  # handlers that mostly wait on a backend want more than one
    informational_vars: tuple[str, ...] = ()  # accepted and logged, no effect
    options: tuple[FamilyOption, ...] = ()


class Handler(Protocol):
    def load(self) -> None: ...
    def invoke(self, request: InferenceRequest) -> InferenceResult: ...


class Family:
    name: str = ""
    display_name: str = ""
    framework_distribution: str = ""  # distribution whose version the summary and labels report
    env: FamilyEnv = FamilyEnv(legacy_prefix="")  # no variables beyond the core's
    context_rule: str = CONTEXT_BY_ARITY
    descend_single_directory: bool = True
    expected_files: str = ""  # for "model dir empty" and missing-file errors
    requirements_skipped_with_lib = False  # AWS's TF image skips code/requirements.txt when code/lib exists
    requirement_constraints: tuple[str, ...] = ()  # pins kept during user requirements installs
    constraint_reason: str = ""
    thread_env: tuple[tuple[str, str], ...] = ()  # extra per-worker variables set unless the user set them
    footprint_mb: int = 100  # memory per worker before the model, for the worker-count memory cap
    # hooks whose parameter literally named `model` (after the positional ones) receives the loaded model as a
    # keyword argument instead of being counted for the context rule (MXNet Module input_fn, mxnet.md §4.1)
    model_keyword_hooks: tuple[str, ...] = ()
    # worker-side modules (the framework and the family defaults) that the zygote imports once, after the
    # requirements install and with the thread variables exported, so that every worker is forked with them
    # instead of importing them itself (cold start, zygote.py). Importing them must start no thread.
    preload_modules: tuple[str, ...] = ()
    preload_with_gpus = True  # False where importing the framework may initialise CUDA before CUDA_VISIBLE_DEVICES
    extra_hook_names: tuple[str, ...] = ()  # family hooks the startup summary lists besides the core's
    # multi-model endpoints (core §13): whether this family serves them yet, and the status text of a load in the
    # default dialect (AWS's MMS-based images answer "Workers scaled"; TorchServe's is PyTorch's own)
    serves_multi_model = True
    mme_loaded_status = "Workers scaled"

    def framework_version(self) -> str:
        try:
            return metadata.version(self.framework_distribution)
        except metadata.PackageNotFoundError:
            return "not installed"

    # ---- supervisor side: never imports the framework
    def resolve_layout(self, settings: Settings, run_dir: Any) -> Any:
        """Where the model and the user module are (layout.Layout). Families whose scripts may come from
        elsewhere (Neo's SAGEMAKER_SUBMIT_DIRECTORY archives, fetched into `run_dir`) replace this."""
        from .. import layout as layout_mod

        return layout_mod.resolve(settings.model_dir, settings.program, settings.program_explicit,
                                  settings.submit_directory, self.descend_single_directory)

    def check_layout(self, settings: Settings, layout: Any) -> None:
        """Refuse at startup what would fail in every worker; a family may keep what it decided on itself
        (workers are forked after this call)."""
        from .. import layout as layout_mod

        layout_mod.check_static(layout, self.expected_files)

    def mme_dialect(self, settings: Settings) -> Any:
        """What the multi-model front answers for this family (smserve/mme/dialect.py): bodies, error texts and what
        each load sets aside. The default is the MMS/TorchServe dialect of core §13.2."""
        from ..mme.dialect import MmeDialect

        return MmeDialect(self, settings)

    def default_workers(self, settings: Settings, layout: Any, cpus: int) -> tuple[int, str] | None:
        """(workers, why) when no worker variable is set and the family knows better than one per CPU."""
        return None

    def thread_environment(self, threads: int) -> tuple[tuple[str, str], ...]:
        """Per-worker variables set unless the user set them; `threads` is the plan's threads per worker."""
        return self.thread_env

    def sidecars(self, settings: Settings, layout: Any, plan: Any, run_dir: Any) -> tuple:
        """The backend processes this family serves through (sidecars.SidecarSpec), started before the workers;
        none for families whose workers run the model themselves. A family may keep what it planned here on
        itself: workers are forked after this call."""
        return ()

    # ---- worker side: may import the framework
    def configure_threads(self, threads: int) -> None:
        """Apply the framework's own thread setting after OMP/MKL/OPENBLAS variables are exported."""

    def create_handler(self, settings: Settings, worker: WorkerInfo, module: ModuleType | None,
                       observe: Callable[[str, float], None], metrics_sink: Callable,
                       warn: Callable[[str], None],
                       observe_batch: Callable[[int, int], None] | None = None) -> Handler:
        from ..batching import BatchSettings
        from ..pipeline import ScriptHandler

        return ScriptHandler(self.defaults(settings, worker), UserHooks.from_module(module), worker,
                             context_rule=self.context_rule, observe=observe, metrics_sink=metrics_sink, warn=warn,
                             model_keyword_hooks=self.model_keyword_hooks,
                             batching=BatchSettings(settings.batch_size, settings.batch_delay)
                             if settings.batch_size > 1 else None, observe_batch=observe_batch)

    def defaults(self, settings: Settings, worker: WorkerInfo) -> Any:
        raise NotImplementedError
