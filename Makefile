# smserve Makefile (minimal; other targets are added alongside).

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
