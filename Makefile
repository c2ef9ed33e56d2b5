# smserve Makefile. Sections: variables · host virtual environments · engine, base and images ·
# demo · tests · benchmark. Every target is safe to re-run (venvs, base image and layers are reused).

# ---------------------------------------------------------------------------
# Variables
# ---------------------------------------------------------------------------
PYTHON      ?= python3.11
HOSTPY      ?= python3
FAMILY      ?= pytorch
VARIANT     ?= cpu
BUILD_FLAGS ?=
PYTEST_ARGS ?=
# Families with a lock file, an image and tests (make test runs each); neo is a skeleton.
FAMILIES    ?= pytorch mxnet tensorflow neo
# The framework wheel each family venv adds to its lock (the +cpu local version selects the CPU torch wheel).
FRAMEWORK_SPEC_pytorch ?= torch==2.13.0+cpu
FRAMEWORK_SPEC_mxnet   ?=
FRAMEWORK_SPEC_tensorflow ?=
FRAMEWORK_SPEC_neo ?=

# ---------------------------------------------------------------------------
# Host virtual environments (.venv/<family>): one lock per family (mxnet needs numpy 1.23, the others
# numpy 2), then the core and the family as editable installs. The stamp file makes them incremental.
#   make venv-pytorch, make venv-mxnet
# ---------------------------------------------------------------------------
.PHONY: $(addprefix venv-,$(FAMILIES))
$(addprefix venv-,$(FAMILIES)): venv-%: .venv/%/.installed

.venv/%/.installed: requirements/core.txt requirements/test.txt %/requirements.txt %/pyproject.toml pyproject.toml
	test -x .venv/$*/bin/python || $(PYTHON) -m venv .venv/$*
	.venv/$*/bin/python -m pip install -q -r $*/requirements.txt -r requirements/test.txt $(FRAMEWORK_SPEC_$*)
	if [ -f $*/venv-setup.py ]; then .venv/$*/bin/python $*/venv-setup.py; fi  # e.g. neo: DLR telemetry off, as in the image
	if [ -f $*/requirements-nodeps.txt ]; then .venv/$*/bin/python -m pip install -q --no-deps -r $*/requirements-nodeps.txt; fi
	if [ -f $*/requirements-test.txt ]; then .venv/$*/bin/python -m pip install -q -r $*/requirements-test.txt; fi
	.venv/$*/bin/python -m pip install -q --no-deps -e . -e ./$*
	touch $@

# The SageMaker Python SDK (v2) for the local-mode client tests, in its own venv (requirements/sdk.txt).
.PHONY: venv-sdk
venv-sdk: .venv/sdk/.installed

.venv/sdk/.installed: requirements/sdk.txt
	test -x .venv/sdk/bin/python || $(PYTHON) -m venv .venv/sdk
	.venv/sdk/bin/python -m pip install -q -r requirements/sdk.txt
	touch $@

# ---------------------------------------------------------------------------
# Engine, base image and images (images.md §5). No registry: the base is
# bootstrapped with debootstrap; builds use the classic builder and --network host.
#   make image FAMILY=pytorch VARIANT=cpu     one matrix row (docker/matrix.toml)
#   make images                               every `ready` row
#   make images-list                          the matrix with statuses and tags
#   BUILD_FLAGS="--stub" / "--neuron-dir DIR" for inf1 rows, "--no-cache" to rebuild
# ---------------------------------------------------------------------------
.PHONY: engine base image images images-list
engine:
	scripts/engine.sh

base: engine
	scripts/bootstrap-base.sh

image: base
	$(HOSTPY) scripts/build_image.py --family $(FAMILY) --variant $(VARIANT) $(BUILD_FLAGS)

images: base
	$(HOSTPY) scripts/build_image.py --all $(BUILD_FLAGS)

images-list:
	@$(HOSTPY) scripts/build_image.py --list

# ---------------------------------------------------------------------------
# Push an image to Amazon ECR (`smserve push`, README "From model to endpoint"): creates the
# repository when missing, logs Docker in with an ECR token, tags, pushes, prints the image URI.
#   make push REGISTRY=<account>.dkr.ecr.<region>.amazonaws.com [FAMILY=pytorch VARIANT=cpu] [REGION=...]
# ---------------------------------------------------------------------------
PUSH_IMAGE ?= $(shell $(HOSTPY) scripts/build_image.py --family $(FAMILY) --variant $(VARIANT) --print-tag)
.PHONY: push
push:
	@test -n "$(REGISTRY)" || { echo "make push: set REGISTRY=<account>.dkr.ecr.<region>.amazonaws.com" >&2; exit 2; }
	$(MAKE) -s .venv/$(FAMILY)/.installed
	.venv/$(FAMILY)/bin/smserve push $(PUSH_IMAGE) --registry $(REGISTRY) $(if $(REGION),--region $(REGION))

# ---------------------------------------------------------------------------
# Demo: engine + base + PyTorch cpu image, pytorch/example packed as model.tar.gz
# and served by the container, JSON and NPY invocations, timings (README "Images").
# ---------------------------------------------------------------------------
.PHONY: demo
demo: venv-pytorch engine
	.venv/pytorch/bin/python scripts/demo.py

# ---------------------------------------------------------------------------
# Tests, the same rules for every family F in $(FAMILIES), each in .venv/F:
#   test-F-host       unit tests, the shared contract suite (tests/contract), the hostile-input findings
#                     (tests/robustness) and the family's own suite (F/tests) against `smserve serve` as a
#                     host process (GPU tests skip without a GPU)
#   test-F-container  the image checklist and entrypoint/serving checks (tests/container) against the
#                     F cpu image, then the contract and family suites against it (slow tests ran on the host)
# With CI=true a missing engine fails instead of skipping.
# ---------------------------------------------------------------------------
# The shared suites. Hook-style families (PyTorch, MXNet) run them all; the TensorFlow family has no model_fn
# hooks (its front converts or runs input_handler/output_handler; its multi-model suite is its own,
# tensorflow/tests/test_tensorflow_mme.py), and the Neo family serves compiled artifacts through BYOM functions or
# AWS's apps, so their own suites (F/tests) are their contract suites, beside the core's unit tests and (Neo) the
# multi-model suite.
HOST_SUITES     ?= tests/unit tests/contract tests/robustness
CONTRACT_SUITES ?= tests/contract
HOST_SUITES_tensorflow     ?= tests/unit
CONTRACT_SUITES_tensorflow ?= tensorflow/tests
HOST_SUITES_neo            ?= tests/unit tests/contract/test_core_mme.py
CONTRACT_SUITES_neo        ?= tests/contract/test_core_mme.py neo/tests
.PHONY: test $(foreach f,$(FAMILIES),test-$(f) test-$(f)-host test-$(f)-container)
test: $(addprefix test-,$(FAMILIES))

$(addprefix test-,$(FAMILIES)): test-%: test-%-host test-%-container

# Tests marked `once` (family-independent server mechanics: signals, deadlines, transport, metrics) run with
# ONCE_FAMILY on both targets; the other families deselect them (their own suites have no such mark).
ONCE_FAMILY ?= pytorch
not_once = $(if $(filter $(1),$(ONCE_FAMILY)),,and not once)
once_filter = $(if $(filter $(1),$(ONCE_FAMILY)),,-m "not once")

$(addsuffix -host,$(addprefix test-,$(FAMILIES))): test-%-host: .venv/%/.installed
	SMSERVE_TEST_FAMILY=$* .venv/$*/bin/python -m pytest $(or $(HOST_SUITES_$*),$(HOST_SUITES)) $*/tests \
	  $(call once_filter,$*) $(PYTEST_ARGS)

$(addsuffix -container,$(addprefix test-,$(FAMILIES))): test-%-container: .venv/%/.installed .venv/sdk/.installed
	$(MAKE) image FAMILY=$* VARIANT=cpu
	SMSERVE_TEST_FAMILY=$* SMSERVE_TEST_SKIP_BUILD=1 .venv/$*/bin/python -m pytest tests/container $(PYTEST_ARGS)
	SMSERVE_TEST_FAMILY=$* SMSERVE_TEST_TARGET=container \
	  SMSERVE_TEST_IMAGE=$$($(HOSTPY) scripts/build_image.py --family $* --variant cpu --print-tag) \
	  .venv/$*/bin/python -m pytest $(or $(CONTRACT_SUITES_$*),$(CONTRACT_SUITES)) $*/tests -m "not slow $(call not_once,$*)" $(PYTEST_ARGS)

# ---------------------------------------------------------------------------
# Benchmark: smserve vs sagemaker-inference 1.10.1 on Multi Model Server 1.1.11
# (docs/benchmarks.md). Sets up Java, wrk and .venv/peer-mms when missing; creates
# .venv/pytorch via `make venv-pytorch` when missing.
# Knobs: BENCH_DURATION (s, default 10), BENCH_WARMUP, BENCH_SERVERS, BENCH_MODELS,
# BENCH_WORKERS, BENCH_CONNECTIONS, BENCH_STRICT=1. Not a CI gate.
# ---------------------------------------------------------------------------
.PHONY: bench bench-peer-setup
bench-peer-setup:
	scripts/bench-peer-setup.sh

bench: bench-peer-setup
	python3 bench/run.py
	python3 bench/run_speed.py

# The speed cells alone (bench/run_speed.py): batching on/off, 1 MB / 6 MB payloads, cold start of both images.
.PHONY: bench-speed
bench-speed: bench-peer-setup
	python3 bench/run_speed.py

# ---------------------------------------------------------------------------
# Request-layer comparison (issue 2 item 4, docs/request-layer.md): gunicorn sync +
# Flask, gunicorn + uvicorn-worker / native ASGI worker + Starlette, uvicorn + Starlette
# or raw ASGI, and smserve, all with the same handler, at 1/2 workers x 1/8 connections,
# plus a /ping probe while handlers block. Creates .venv/bench-layers (pins in
# bench/layers/requirements.txt) and .venv/pytorch when missing; needs wrk.
# Knobs: BENCH_DURATION (s, default 8), BENCH_WARMUP, BENCH_LAYERS, BENCH_WORKERS,
# BENCH_CONNECTIONS, BENCH_ROUNDS, BENCH_PROBE_SLEEP, BENCH_MAX_LOAD. Not a CI gate.
# ---------------------------------------------------------------------------
.PHONY: bench-layers
bench-layers:
	python3 bench/layers/run.py

# ---------------------------------------------------------------------------
# MXNet family benchmark row (bench/run_mxnet.py, docs/benchmarks.md): the same cells
# as `make bench` for smserve's MXNet family (.venv/mxnet) vs sagemaker-mxnet-inference
# 1.5.5 + sagemaker-inference 1.6.1 on multi-model-server 1.1.8 (.venv/peer-mxnet, pins
# in bench/peer_mxnet/requirements.txt); models: no-op handler and a Module checkpoint.
# Same knobs as `make bench`. Not a CI gate.
# ---------------------------------------------------------------------------
.PHONY: bench-mxnet
bench-mxnet: bench-peer-setup
	python3 bench/run_mxnet.py

# ---------------------------------------------------------------------------
# Neo family benchmark (bench/run_neo.py, docs/benchmarks.md): the xgboost app (CSV, 1 and 100 rows)
# and the image app (224x224 JPEG) of smserve's Neo family (.venv/neo) vs sagemaker-inference 1.10.1
# on multi-model-server 1.1.11 with dlr 1.6.0 and a handler doing AWS's Neo DLR work (.venv/peer-neo,
# pins and handler in bench/peer_neo/), 2 workers each, 1/8 connections, against DLRModel.run called
# directly; models built on the fly by neo/tests/neo_models.py. Creates both venvs when missing (the
# peer's DLR telemetry off through neo/venv-setup.py); Java and wrk as for `make bench`.
# Knobs: BENCH_DURATION (s, default 10), BENCH_NEO_ARGS (e.g. --quick, --json PATH, --strict). Not a CI gate.
# ---------------------------------------------------------------------------
.PHONY: bench-neo
bench-neo:
	command -v java >/dev/null 2>&1 && command -v wrk >/dev/null 2>&1 || scripts/bench-peer-setup.sh
	test -x .venv/neo/bin/smserve || $(MAKE) -s .venv/neo/.installed
	$(MAKE) -s .venv/peer-neo/.installed
	.venv/neo/bin/python bench/run_neo.py $(BENCH_NEO_ARGS)

.venv/peer-neo/.installed: bench/peer_neo/requirements.txt
	test -x .venv/peer-neo/bin/python || $(PYTHON) -m venv .venv/peer-neo
	.venv/peer-neo/bin/python -m pip install -q -r bench/peer_neo/requirements.txt
	.venv/peer-neo/bin/python neo/venv-setup.py  # DLR telemetry off before anything imports dlr
	touch $@

# ---------------------------------------------------------------------------
# Multi-model endpoints (bench/run_mme.py, docs/benchmarks.md): smserve's MXNet family in MME mode vs the AWS
# MXNet toolkit on Multi Model Server in MME mode (.venv/peer-mxnet, the peer of bench-mxnet), same run: load
# time, invoke req/s and p99 over 10 loaded models at 1/8 connections, memory per idle model, and 30 models
# cycling through room for 10. Knobs: BENCH_DURATION, BENCH_WARMUP, BENCH_SERVERS, BENCH_MME_CYCLE. Not a CI gate.
# ---------------------------------------------------------------------------
.PHONY: bench-mme
bench-mme:
	python3 bench/run_mme.py

# ---------------------------------------------------------------------------
# TensorFlow family benchmark (bench/run_tensorflow.py): half_plus_three and a dense MLP 64-256-256-10
# (SavedModels built into a temp dir) through the default conversion path (local channel, and
# SMSERVE_TF_LOCAL_CHANNEL=false), an input_handler/output_handler pair and backend batching, at 1/2
# workers x 1/8 connections, against the SavedModel signature called directly in the same run.
# Creates .venv/tensorflow when missing; needs wrk (installed from Debian when missing).
# Knobs: BENCH_DURATION (s, default 10), BENCH_TF_ARGS (e.g. --quick, --sections default,batching,
# --json PATH, --strict). Not a CI gate.
# ---------------------------------------------------------------------------
.PHONY: bench-tensorflow
bench-tensorflow:
	scripts/bench-peer-setup.sh --wrk-only
	test -x .venv/tensorflow/bin/smserve || $(MAKE) -s .venv/tensorflow/.installed
	.venv/tensorflow/bin/python bench/run_tensorflow.py $(BENCH_TF_ARGS)
