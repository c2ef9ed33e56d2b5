#!/usr/bin/env bash
# Provide a Docker engine (images.md §5.1).
# If `docker info` answers, do nothing. Otherwise install Debian's docker.io (20.10, API 1.41)
# and start `dockerd --bridge=none --iptables=false` in the background: no bridge network,
# no private-range address is ever created. Containers use --network host.
# Idempotent. With CI=true a missing engine that cannot be provided is an error (exit 1);
# without CI it is an error too (callers decide whether to skip).
set -euo pipefail

LOG=${SMSERVE_DOCKERD_LOG:-/tmp/smserve-dockerd.log}
WAIT_S=${SMSERVE_DOCKERD_WAIT_S:-90}

say() { echo "[engine] $*" >&2; }
fail() {
  say "ERROR: $*"
  if [ "${CI:-}" = "true" ]; then say "CI=true: a missing Docker engine is a failure, not a skip"; fi
  exit 1
}

if docker info >/dev/null 2>&1; then
  say "engine answers: $(docker version --format '{{.Server.Version}} (API {{.Server.APIVersion}})' 2>/dev/null || echo '?')"
  exit 0
fi

if ! command -v dockerd >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] || fail "no Docker engine and not root: cannot install docker.io"
  command -v apt-get >/dev/null 2>&1 || fail "no Docker engine and no apt-get to install docker.io"
  say "installing Debian docker.io (apt-get) ..."
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || fail "apt-get update failed"
  # docker.io's postinst tries to start the service; without systemd that fails harmlessly.
  apt-get install -y -qq --no-install-recommends docker.io >/tmp/smserve-apt-docker.log 2>&1 \
    || { tail -20 /tmp/smserve-apt-docker.log >&2; fail "apt-get install docker.io failed"; }
  # Debian ships the docker CLI in docker.io too; keep a newer preinstalled CLI first on PATH (harmless either way).
fi
command -v dockerd >/dev/null 2>&1 || fail "dockerd not found after install"

if ! pgrep -x dockerd >/dev/null 2>&1; then
  say "starting dockerd --bridge=none --iptables=false (log: $LOG)"
  [ "$(id -u)" = 0 ] || fail "dockerd must be started as root"
  # containerd: docker.io 20.10 starts its own managed containerd when none is given.
  nohup dockerd --bridge=none --iptables=false --ip-forward=false --ip-masq=false \
    >"$LOG" 2>&1 </dev/null &
  disown || true
fi

for _ in $(seq 1 "$WAIT_S"); do
  if docker info >/dev/null 2>&1; then
    say "engine ready: $(docker version --format '{{.Server.Version}} (API {{.Server.APIVersion}})')"
    exit 0
  fi
  sleep 1
done
tail -30 "$LOG" >&2 || true
fail "dockerd did not answer within ${WAIT_S}s (see $LOG)"
