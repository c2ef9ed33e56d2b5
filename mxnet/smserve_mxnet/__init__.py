"""MXNet family declaration (spec mxnet.md). mxnet is imported only by `defaults`, inside workers.

Nothing here imports mxnet or numpy: the supervisor reads this declaration, and MXNet's engine threads do
not survive fork (mxnet.md §1).
"""

from __future__ import annotations

from smserve.config import parse_int
from smserve.families import Family, FamilyEnv, FamilyOption
from smserve.hooks import CONTEXT_NO_DEFAULT

NUMPY_PIN = "numpy==1.23.5"


def _parse_batch(name: str, value: str) -> int:
    return parse_int(name, value, 1)


class MXNetFamily(Family):
    name = "mxnet"
    display_name = "MXNet"
    framework_distribution = "mxnet"
    # AWS MXNet images (sagemaker-inference 1.6.1) never pass a context: only an extra parameter without a
    # default receives one (mxnet.md §7).
    context_rule = CONTEXT_NO_DEFAULT
    expected_files = ("model-symbol.json, model-0000.params and model-shapes.json (Module), or "
                      "model-symbol.json and model-0000.params (Gluon export), or a model_fn in code/inference.py")
    # mxnet 1.9.1 imports only with numpy 1.23.x on Python 3.11; user requirements must not move it (mxnet.md §1)
    requirement_constraints = (NUMPY_PIN,)
    constraint_reason = (f"the MXNet image pins {NUMPY_PIN} because mxnet 1.9.1 cannot be imported with numpy "
                         f">= 1.24 (np.bool was removed); user requirements are installed with that constraint, "
                         f"so drop or relax any numpy requirement that excludes 1.23.5")
    # as AWS sets them; OMP/MKL/OpenBLAS threads follow core §15
    thread_env = (("MXNET_CPU_WORKER_NTHREADS", "1"), ("MXNET_CPU_PRIORITY_NTHREADS", "1"),
                  ("MXNET_KVSTORE_REDUCTION_NTHREADS", "1"))
    footprint_mb = 250  # measured process max RSS 227 MB with a small model (mxnet.md §1)
    # the Module input_fn contract: a user input_fn with a parameter named `model` gets the model (mxnet.md §4.1)
    model_keyword_hooks = ("input_fn",)
    # mxnet starts its engine threads at the first operation, not at import; GPU builds are not preloaded
    preload_modules = ("mxnet", "smserve_mxnet.defaults")
    preload_with_gpus = False
    env = FamilyEnv(
        legacy_prefix="MMS",
        worker_vars=("MMS_NUM_WORKER",),
        options=(
            FamilyOption("SAGEMAKER_DEFAULT_MODEL_FIRST_DIMENSION_SIZE", _parse_batch, 1,
                         "batch size B that replaces the first dimension of model-shapes.json for the default "
                         "Module (inputs are padded to a multiple of B and trimmed back)"),
        ),
    )

    def defaults(self, settings, worker):
        from .defaults import MXNetDefaults

        return MXNetDefaults(settings, worker)
