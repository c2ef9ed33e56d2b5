"""The Neo family (spec neo.md): Neo-compiled models (TVM graph executor, Relay VM, Treelite) on the DLR runtime,
with AWS's BYOM script contract (`neo_preprocess` / `neo_postprocess`), toolkit hooks, or AWS's ready apps.

The supervisor side (this module, artifacts, submitted) reads files only: which script, which mode, which
backend, which libdlr, how many workers. dlr, numpy and Pillow are imported in the workers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from smserve.config import parse_bool, parse_int
from smserve.errors import ConfigError, StartupError
from smserve.families import Family, FamilyEnv, FamilyOption

from . import artifacts as artifacts_mod
from .artifacts import Artifacts

log = logging.getLogger("smserve.neo")

BYOM_HOOKS = ("neo_preprocess", "neo_postprocess")
TOOLKIT_HOOKS = ("model_fn", "input_fn", "predict_fn", "output_fn", "transform_fn")
APPS = ("auto", "image_classification", "xgboost", "generic")
# an operator-supplied libdlr for Treelite 1.x-3.x libraries (a DLR 1.10 build, neo.md §7.4), put there by the
# image build's optional input (build_image.py --neo-libdlr); the image's own library (dlr 1.6.0) runs Treelite
# 0.9x only
TREELITE1_LIBRARY = "/opt/smserve/neo/libdlr-treelite1/libdlr.so"


def _app(name: str, value: str) -> str:
    value = value.strip().lower()
    if value not in APPS:
        raise ConfigError(name, value, " or ".join(APPS))
    return value


def _threads(name: str, value: str) -> int:
    return parse_int(name, value, 1)


def _text(name: str, value: str) -> str:
    return value.strip()


@dataclass(frozen=True)
class NeoPlan:
    mode: str  # "byom", "toolkit" or "app"
    app: str | None  # image_classification, xgboost or generic when mode is "app"
    artifacts: Artifacts | None  # None when a user model_fn loads the model itself
    dev_type: str
    use_default_dlr: bool
    routed_library: Path | None
    image_shape: tuple[int, int, int, int] | None = None


class NeoFamily(Family):
    name = "neo"
    display_name = "Neo (DLR)"
    framework_distribution = "dlr"
    expected_files = ("a Neo-compiled model: compiled.so + compiled_model.json + compiled.params (TVM), a .ro with "
                      "its .so and .meta (Relay VM), or one Treelite .so")
    extra_hook_names = BYOM_HOOKS
    footprint_mb = 120
    # AWS's Neo images disable thread pinning: containers share cores (neo.md §7.6)
    thread_env = (("TVM_BIND_THREADS", "0"), ("TREELITE_BIND_THREADS", "0"))
    # nothing to preload: workers load DLR in ~0.1 s, and numpy's OpenBLAS starts its thread pool at import
    # when a TVM worker gets several threads, which would make the zygote unsafe to fork from
    preload_modules = ()
    env = FamilyEnv(
        legacy_prefix="MMS",
        worker_vars=("MMS_NUM_WORKER",),
        options=(
            FamilyOption("SMSERVE_NEO_APP", _app, "auto",
                         "the app for a model without a script: auto, image_classification, xgboost or generic"),
            FamilyOption("SMSERVE_NEO_USE_DEFAULT_DLR", parse_bool, False,
                         "ignore a libdlr.so shipped inside the model directory and use the image's"),
            FamilyOption("USE_GPU", parse_bool, False, "run DLR on the GPU (AWS's GPU Neo images set USE_GPU=1)"),
            FamilyOption("MMS_NUM_THREAD_PER_WORKER", _threads, None,
                         "TVM/OpenMP threads per worker (default: CPUs / workers)"),
            FamilyOption("SMSERVE_NEO_TREELITE1_LIBDLR", _text, TREELITE1_LIBRARY,
                         "the libdlr.so (DLR 1.10) that serves Treelite 1.x-3.x libraries, when present"),
            FamilyOption("AWS_REGION", _text, None, "region of the S3 client that fetches SAGEMAKER_SUBMIT_DIRECTORY"),
            FamilyOption("SAGEMAKER_REGION", _text, None, "region used when AWS_REGION is not set"),
        ),
    )

    def __init__(self) -> None:
        self.plan: NeoPlan | None = None
        self._warn = log.warning
        self._threads_per_worker: int | None = None

    # ---------------------------------------------------------------- supervisor side
    def resolve_layout(self, settings, run_dir):
        from . import submitted

        options = settings.family_options
        region = options.get("AWS_REGION") or options.get("SAGEMAKER_REGION")
        return submitted.resolve(settings, Path(run_dir) / "submitted", region, self.descend_single_directory)

    def check_layout(self, settings, layout) -> None:
        defined = set(layout.module.defined) if layout.module else set()
        byom = [h for h in BYOM_HOOKS if h in defined]
        toolkit = [h for h in TOOLKIT_HOOKS if h in defined]
        if byom and toolkit:
            raise StartupError(f"{layout.module.path} defines both BYOM functions ({', '.join(byom)}) and toolkit "
                               f"hooks ({', '.join(toolkit)}): use neo_preprocess/neo_postprocess, or the hooks, "
                               f"not both")
        if toolkit:
            super().check_layout(settings, layout)  # transform_fn conflicts, nothing to load
        mode = "byom" if byom else "toolkit" if toolkit else "app"
        if layout.module and mode == "app":
            log.warning("%s defines none of %s nor %s; serving with the app defaults", layout.module.path,
                        ", ".join(BYOM_HOOKS), ", ".join(TOOLKIT_HOOKS))
        options = settings.family_options
        self._threads_per_worker = options["MMS_NUM_THREAD_PER_WORKER"]
        found = None if "model_fn" in defined else artifacts_mod.inspect(layout.model_dir)
        dev_type = self._device(settings, found)
        if found is not None:
            artifacts_mod.check_device(found, dev_type)
        use_default = options["SMSERVE_NEO_USE_DEFAULT_DLR"]
        routed = self._route_library(found, use_default, Path(options["SMSERVE_NEO_TREELITE1_LIBDLR"]))
        app = shape = None
        if mode == "app":
            app = options["SMSERVE_NEO_APP"]
            if app == "auto":
                app = ("image_classification" if artifacts_mod.has_image_shape(layout.model_dir) else
                       "xgboost" if found.backend == artifacts_mod.TREELITE else "generic")
            if app == "image_classification":
                _, shape = artifacts_mod.read_image_shape(layout.model_dir)
        self.plan = NeoPlan(mode, app, found, dev_type, use_default, routed, shape)
        log.info("Neo mode %s%s; DLR backend %s%s; device %s", mode, f" (app {app})" if app else "",
                 found.backend if found else "(user model_fn)",
                 f", Treelite ABI {found.treelite_abi}" if found and found.treelite_abi else "", dev_type)

    @staticmethod
    def _device(settings, found: Artifacts | None) -> str:
        """gpu when USE_GPU=1 (AWS's GPU image), or the .meta targets a GPU and one is visible."""
        from smserve.resources import visible_gpus

        if settings.family_options["USE_GPU"]:
            return "gpu"
        if found is not None and found.target_device == "gpu" and visible_gpus(settings.cuda_visible_devices):
            return "gpu"
        return "cpu"

    @staticmethod
    def _route_library(found: Artifacts | None, use_default: bool, treelite1: Path) -> Path | None:
        """A Treelite library of another ABI than the image's runtime would fail or hang in DLR (neo.md §7.5)."""
        if found is None or found.backend != artifacts_mod.TREELITE:
            return None
        abi, library = found.treelite_abi, found.library
        if abi == artifacts_mod.ABI_TL2CGEN:
            raise StartupError(f"{library} was compiled by tl2cgen (Treelite 4.x), which no DLR release can run "
                               f"(DLR 1.10 hangs on it): compile the model with SageMaker Neo, or with Treelite "
                               f"0.93 export_lib for this image")
        if abi == artifacts_mod.ABI_1X_3X:
            if found.own_libdlr is not None and not use_default:
                return None  # the model brings the DLR build it was compiled for (AWS's rule)
            if treelite1.is_file():
                log.info("%s uses the Treelite 1.x-3.x ABI: served with %s", library, treelite1)
                return treelite1
            raise StartupError(f"{library} uses the Treelite 1.x-3.x ABI (it exports get_num_class), but this image's "
                               f"DLR (libdlr 1.6.0) runs Treelite 0.9x libraries only: compile the model with "
                               f"Treelite 0.93 (or SageMaker Neo), or build the image with a DLR 1.10 library "
                               f"(scripts/build_image.py --neo-libdlr PATH) or point SMSERVE_NEO_TREELITE1_LIBDLR at one")
        return None

    def default_workers(self, settings, layout, cpus):
        """Neo's defaults (neo-ai-dlr PR #80): trees scale with processes, TVM with its own thread pool."""
        found = self.plan.artifacts if self.plan else None
        if found is not None and found.backend in (artifacts_mod.TVM, artifacts_mod.RELAY_VM):
            return 1, f"1 worker with {cpus} TVM threads (Neo default for {found.backend} models)"
        return None

    def thread_environment(self, threads: int):
        """TVM's pool takes the plan's threads per worker, or MMS_NUM_THREAD_PER_WORKER (then OpenMP too)."""
        chosen = self._threads_per_worker or threads
        extra = (("OMP_NUM_THREADS", str(chosen)),) if self._threads_per_worker else ()
        return self.thread_env + (("TVM_NUM_THREADS", str(chosen)),) + extra

    # ---------------------------------------------------------------- worker side
    def _runtime_loader(self, worker):
        plan = self.plan
        warn = self._warn

        def load():
            from .runtime import Runtime, bind_library, choose_library

            own = plan.artifacts.own_libdlr if plan.artifacts else None
            library = choose_library(own, plan.use_default_dlr, plan.routed_library, warn)
            bind_library(library)
            return Runtime(worker.model_dir, plan.dev_type, library)
        return load

    def create_handler(self, settings, worker, module, observe, metrics_sink, warn, observe_batch=None):
        plan = self.plan
        self._warn = warn
        if plan.mode == "byom":
            from .byom import ByomHandler

            return ByomHandler(self._runtime_loader(worker), getattr(module, "neo_preprocess", None),
                               getattr(module, "neo_postprocess", None))
        if plan.app == "image_classification":
            from .apps import ImageClassificationApp

            return ImageClassificationApp(self._runtime_loader(worker), plan.image_shape)
        if plan.app == "xgboost":
            from .apps import XGBoostApp

            return XGBoostApp(self._runtime_loader(worker))
        return super().create_handler(settings, worker, module if plan.mode == "toolkit" else None, observe,
                                      metrics_sink, warn, observe_batch)

    def defaults(self, settings, worker):
        from .defaults import NeoDefaults

        found = self.plan.artifacts
        return NeoDefaults(self._runtime_loader(worker), found.graph_shapes if found else None)
