#!/usr/bin/env bash
# Bootstrap the local base image smserve-base:bookworm from Debian 12 packages (images.md §5.2).
# No registry is reachable, so no base image can be pulled: debootstrap a minbase rootfs from the
# host's configured Debian package source, add the host's extra CA certificates, strip APT lists,
# caches and every package-source host name, and `docker import` it.
#
# Usage: scripts/bootstrap-base.sh [--force]
# Env:   SMSERVE_BASE_TAG (default smserve-base:bookworm), SOURCE_DATE_EPOCH (default: git HEAD time),
#        SMSERVE_DEBIAN_MIRROR (override the mirror read from /etc/apt/sources.list*),
#        SMSERVE_BASE_UPGRADE=1 (default) also applies bookworm-updates/-security from the host sources.
# Artefacts: build/base/dpkg-l-<tag>.txt, build/base/base-image.txt
set -euo pipefail

cd "$(dirname "$0")/.."
REPO=$(pwd)
BASE_REPO=${SMSERVE_BASE_TAG:-smserve-base:bookworm}
NAME=${BASE_REPO%%:*}
SUITE=bookworm
FORCE=0
[ "${1:-}" = "--force" ] && FORCE=1

say() { echo "[base] $*" >&2; }
die() { say "ERROR: $*"; exit 1; }

docker info >/dev/null 2>&1 || die "no Docker engine answers (run scripts/engine.sh first)"

if [ "$FORCE" = 0 ] && docker image inspect "$BASE_REPO" >/dev/null 2>&1; then
  say "reusing $BASE_REPO ($(docker image inspect -f '{{.Id}}' "$BASE_REPO" | cut -c1-19))"
  # A fresh checkout on a machine whose engine kept the base: record its package list from the image.
  if [ ! -s "$REPO/build/base/dpkg-l.txt" ]; then
    mkdir -p "$REPO/build/base"
    docker run --rm --network host "$BASE_REPO" dpkg -l >"$REPO/build/base/dpkg-l.txt.tmp" \
      && mv "$REPO/build/base/dpkg-l.txt.tmp" "$REPO/build/base/dpkg-l.txt" \
      || say "WARNING: could not list the packages of $BASE_REPO"
  fi
  exit 0
fi

[ "$(id -u)" = 0 ] || die "debootstrap needs root"

# --- the host's Debian package source (never hard-coded in the repository) ---------------------
read_mirror() {
  if [ -n "${SMSERVE_DEBIAN_MIRROR:-}" ]; then echo "$SMSERVE_DEBIAN_MIRROR"; return; fi
  python3 - <<'PY'
import glob, re, sys
files = sorted(glob.glob("/etc/apt/sources.list.d/*.sources")) + ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*.list"))
for f in files:
    try:
        text = open(f).read()
    except OSError:
        continue
    if f.endswith(".sources"):
        for stanza in re.split(r"\n\s*\n", text):
            fields = {}
            for line in stanza.splitlines():
                if line.startswith("#") or ":" not in line:
                    continue
                k, v = line.split(":", 1)
                fields[k.strip().lower()] = v.strip()
            if fields.get("enabled", "yes").lower() == "no":
                continue
            if "deb" in fields.get("types", "").split() and "bookworm" in fields.get("suites", "").split() \
                    and "main" in fields.get("components", "").split():
                print(fields["uris"].split()[0]); sys.exit(0)
    else:
        for line in text.splitlines():
            p = line.split("#", 1)[0].split()
            if len(p) >= 4 and p[0] == "deb":
                p = [x for x in p if not x.startswith("[")]
                if len(p) >= 4 and p[2] == "bookworm" and "main" in p[3:]:
                    print(p[1]); sys.exit(0)
sys.exit("no 'deb ... bookworm main' source found in /etc/apt/sources.list*")
PY
}
MIRROR=$(read_mirror) || die "cannot find the Debian bookworm package source"
MIRROR_HOST=$(python3 -c 'import sys,urllib.parse; print(urllib.parse.urlsplit(sys.argv[1]).hostname or "")' "$MIRROR")
say "Debian package source read from the host configuration"

if ! command -v debootstrap >/dev/null 2>&1; then
  say "installing debootstrap ..."
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null 2>&1 \
    || { DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; }
fi

export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$REPO" log -1 --format=%ct 2>/dev/null || date +%s)}
DATE=$(date -u +%Y%m%d)
DATED_TAG="$NAME:$SUITE-$DATE"
WORK=$(mktemp -d /tmp/smserve-base.XXXXXX)
ROOT="$WORK/rootfs"
cleanup() {
  for m in proc sys dev/pts dev; do mountpoint -q "$ROOT/$m" 2>/dev/null && umount -l "$ROOT/$m" || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

# Runtime libraries the wheels need (verified with ldd over site-packages in the images):
#   libgomp1 (torch, scipy via OpenMP), libstdc++6/libgcc-s1 (C++ wheels), libgfortran5 +
#   libquadmath0 (mxnet 1.9.1: libmxnet.so links them, not bundled in the wheel), tini (PID 1).
PKGS="python3.11,python3.11-venv,python3-distutils,ca-certificates,libgomp1,libstdc++6,libgcc-s1,libgfortran5,libquadmath0,tini"
say "debootstrap --variant=minbase $SUITE (+ $PKGS) ..."
t0=$(date +%s)
debootstrap --variant=minbase --include="$PKGS" "$SUITE" "$ROOT" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
  || { tail -30 "$WORK/debootstrap.log" >&2; tail -40 "$ROOT/debootstrap/debootstrap.log" >&2 2>/dev/null; die "debootstrap failed"; }
say "debootstrap done in $(( $(date +%s) - t0 ))s"

mount -t proc proc "$ROOT/proc"
in_root() { LC_ALL=C DEBIAN_FRONTEND=noninteractive chroot "$ROOT" "$@"; }

# Security and point-release updates from the host's own sources (copied in, removed afterwards).
if [ "${SMSERVE_BASE_UPGRADE:-1}" = 1 ]; then
  say "applying bookworm-updates / bookworm-security from the host's package sources ..."
  rm -f "$ROOT/etc/apt/sources.list"
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    grep -q bookworm "$f" || continue
    mkdir -p "$ROOT$(dirname "$f")"; cp "$f" "$ROOT$f"
  done
  cp /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true
  if in_root apt-get update -qq >"$WORK/upgrade.log" 2>&1 && in_root apt-get -y -qq upgrade >>"$WORK/upgrade.log" 2>&1; then
    say "updates applied"
  else
    tail -10 "$WORK/upgrade.log" >&2; say "WARNING: updates could not be applied; keeping the debootstrap release"
  fi
fi

# Extra CA certificates of the host (pip in build stages needs them, images.md §5.3).
if compgen -G "/usr/local/share/ca-certificates/*" >/dev/null; then
  mkdir -p "$ROOT/usr/local/share/ca-certificates"
  cp -a /usr/local/share/ca-certificates/. "$ROOT/usr/local/share/ca-certificates/"
fi
in_root update-ca-certificates >/dev/null

# Record the package list (artefact).
mkdir -p "$REPO/build/base"
in_root dpkg -l >"$REPO/build/base/dpkg-l-$SUITE-$DATE.txt"
cp "$REPO/build/base/dpkg-l-$SUITE-$DATE.txt" "$REPO/build/base/dpkg-l.txt"
umount "$ROOT/proc"

# Strip APT lists, caches, logs, docs and every package-source host name.
rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/apt/* "$ROOT"/var/cache/debconf/*-old \
       "$ROOT"/var/log/* "$ROOT"/tmp/* "$ROOT"/var/tmp/* "$ROOT"/root/.cache \
       "$ROOT"/usr/share/man/* "$ROOT"/usr/share/info/* "$ROOT"/usr/share/locale/* \
       "$ROOT"/usr/share/lintian "$ROOT"/usr/share/linda
find "$ROOT/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
find "$ROOT/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null || true
rm -f "$ROOT/etc/apt/sources.list" "$ROOT"/etc/apt/sources.list.d/*
printf '# package sources are configured at build time only; none are kept in the image\n' >"$ROOT/etc/apt/sources.list"
: >"$ROOT/etc/resolv.conf"          # the engine provides resolv.conf, hosts and hostname at run time
echo localhost >"$ROOT/etc/hostname"
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$ROOT/etc/hosts"
# Keep docs/man/locale out of later apt installs (builder stages).
mkdir -p "$ROOT/etc/dpkg/dpkg.cfg.d"
printf 'path-exclude /usr/share/man/*\npath-exclude /usr/share/locale/*\npath-exclude /usr/share/info/*\n' \
  >"$ROOT/etc/dpkg/dpkg.cfg.d/01-smserve-nodoc"

if [ -n "$MIRROR_HOST" ]; then
  leaks=$(grep -rIl --fixed-strings "$MIRROR_HOST" "$ROOT/etc" "$ROOT/var" "$ROOT/root" "$ROOT/usr/local" 2>/dev/null || true)
  [ -z "$leaks" ] || die "package-source host name still present in: $leaks"
fi

# Normalise timestamps for reproducible package lists / layers.
find "$ROOT" -xdev -newermt "@$SOURCE_DATE_EPOCH" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} + 2>/dev/null || true

say "importing $DATED_TAG ..."
tar --numeric-owner --xattrs -C "$ROOT" -c . | docker import \
  --message "smserve base: debootstrap --variant=minbase $SUITE" \
  --change 'ENV LANG=C.UTF-8' \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["/bin/bash"]' - "$DATED_TAG" >/dev/null
docker tag "$DATED_TAG" "$BASE_REPO"
docker image inspect -f '{{.Id}} {{.Size}}' "$BASE_REPO" | tee "$REPO/build/base/base-image.txt" >/dev/null
say "built $DATED_TAG -> $BASE_REPO ($(( $(docker image inspect -f '{{.Size}}' "$BASE_REPO") / 1000000 )) MB) in $(( $(date +%s) - t0 ))s"
