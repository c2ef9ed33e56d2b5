#!/usr/bin/env bash
# Set up the benchmark peer and load generator (idempotent):
#   - Java (openjdk-17-jre-headless) and wrk from Debian, if missing;
#   - .venv/peer-mms with sagemaker-inference 1.10.1 + multi-model-server 1.1.11 (+ undeclared deps, torch).
# --wrk-only: wrk alone (benchmarks without a peer, e.g. `make bench-tensorflow`).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
VENV=.venv/peer-mms
wrk_only=false
[ "${1:-}" = "--wrk-only" ] && wrk_only=true

need_apt=()
$wrk_only || command -v java >/dev/null 2>&1 || need_apt+=(openjdk-17-jre-headless)
command -v wrk >/dev/null 2>&1 || need_apt+=(wrk)
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}"
fi
$wrk_only && exit 0

stamp=$VENV/.bench-peer-installed
if [ ! -f "$stamp" ] || [ bench/peer_mms/requirements.txt -nt "$stamp" ]; then
  [ -x $VENV/bin/python ] || $PY -m venv $VENV
  $VENV/bin/pip install -q --disable-pip-version-check -r bench/peer_mms/requirements.txt
  touch "$stamp"
fi
$VENV/bin/python -c "import sagemaker_inference.model_server, mms, torch" 2>/dev/null \
  && echo "bench peer ready: $VENV ($(java -version 2>&1 | head -1); $(wrk --version 2>&1 | head -1 | cut -c1-30))"
