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
TORCH_SPEC  ?= torch==2.13.0+cpu
VENV_PT      = .venv/pytorch
VENV_MX      = .venv/mxnet

# ---------------------------------------------------------------------------
# Host virtual environments (.venv/<family>): one lock per family environment
# (mxnet needs numpy 1.23, pytorch numpy 2). The stamp file makes them incremental.
# ---------------------------------------------------------------------------
.PHONY: venv-pytorch venv-mxnet
venv-pytorch: $(VENV_PT)/.installed
venv-mxnet: $(VENV_MX)/.installed

$(VENV_PT)/.installed: requirements/core.txt requirements/pytorch.txt requirements/test.txt pyproject.toml
	test -x $(VENV_PT)/bin/python || $(PYTHON) -m venv $(VENV_PT)
	$(VENV_PT)/bin/python -m pip install -q -r requirements/pytorch.txt -r requirements/test.txt "$(TORCH_SPEC)"
	$(VENV_PT)/bin/python -m pip install -q -e . --no-deps
	touch $@

$(VENV_MX)/.installed: requirements/core.txt requirements/mxnet.txt requirements/test.txt pyproject.toml
	test -x $(VENV_MX)/bin/python || $(PYTHON) -m venv $(VENV_MX)
	$(VENV_MX)/bin/python -m pip install -q -r requirements/mxnet.txt -r requirements/test.txt
	$(VENV_MX)/bin/python -m pip install -q -e . --no-deps
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
# Demo: engine + base + PyTorch cpu image, example model.tar.gz served by the
# container, JSON and NPY invocations, timings (README "Images").
# ---------------------------------------------------------------------------
.PHONY: demo
demo: venv-pytorch engine
	$(VENV_PT)/bin/python scripts/demo.py

# ---------------------------------------------------------------------------
# Tests. test-host: the serving core on the host. test-container: the images.md
# checklist and the server contract against the built PyTorch cpu image
# (with CI=true a missing engine fails instead of skipping).
# ---------------------------------------------------------------------------
.PHONY: test test-host test-container test-contract-container
test: test-host test-container

# Unit tests and the contract suite against `smserve serve` as a host process (GPU tests skip without a GPU).
test-host: venv-pytorch
	$(VENV_PT)/bin/python -m pytest tests/unit tests/contract $(PYTEST_ARGS)

# images.md checklist, then the same contract suite against the container (slow tests ran on the host).
test-container: venv-pytorch
	$(MAKE) image FAMILY=pytorch VARIANT=cpu
	SMSERVE_TEST_SKIP_BUILD=1 $(VENV_PT)/bin/python -m pytest tests/container $(PYTEST_ARGS)
	$(MAKE) test-contract-container

# The contract suite (tests/contract) with the container target (tests/harness.py switch).
test-contract-container: venv-pytorch
	SMSERVE_TEST_TARGET=container SMSERVE_TEST_IMAGE=smserve-pytorch:2.13.0-cpu \
	  $(VENV_PT)/bin/python -m pytest tests/contract -m "not slow" $(PYTEST_ARGS)

# ---------------------------------------------------------------------------
# MXNet family tests in .venv/mxnet (mxnet 1.9.1, numpy 1.23.5, no torch).
# test-mxnet-host: unit tests + the contract suite (the shared core modules
# test_core_*.py with MXNet models, and test_mxnet.py for mxnet.md §11) against
# `smserve serve` in the host venv; test-mxnet-container: the images.md checklist
# of image contents and the contract suite (slow tests ran on the host) against the mxnet cpu image.
# ---------------------------------------------------------------------------
.PHONY: test-mxnet test-mxnet-host test-mxnet-container
MX_IMAGE ?= smserve-mxnet:1.9.1-cpu
test: test-mxnet
test-mxnet: test-mxnet-host test-mxnet-container

test-mxnet-host: venv-mxnet
	SMSERVE_TEST_FAMILY=mxnet $(VENV_MX)/bin/python -m pytest tests/unit tests/contract $(PYTEST_ARGS)

test-mxnet-container: venv-mxnet
	$(MAKE) image FAMILY=mxnet VARIANT=cpu
	SMSERVE_TEST_FAMILY=mxnet SMSERVE_TEST_TARGET=container SMSERVE_TEST_IMAGE=$(MX_IMAGE) \
	  $(VENV_MX)/bin/python -m pytest tests/container/test_image_contents.py tests/contract -m "not slow" $(PYTEST_ARGS)

# ---------------------------------------------------------------------------
# Benchmark: smserve vs sagemaker-inference 1.10.1 on Multi Model Server 1.1.11
# (docs/benchmarks.md). Sets up Java, wrk and .venv/peer-mms when missing; creates
# .venv/pytorch via `make venv-pytorch` (or the same commands) when missing.
# Knobs: BENCH_DURATION (s, default 10), BENCH_WARMUP, BENCH_SERVERS, BENCH_MODELS,
# BENCH_WORKERS, BENCH_CONNECTIONS, BENCH_STRICT=1. Not a CI gate.
# ---------------------------------------------------------------------------
.PHONY: bench bench-peer-setup
bench-peer-setup:
	scripts/bench-peer-setup.sh

bench: bench-peer-setup
	python3 bench/run.py

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
