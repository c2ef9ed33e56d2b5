#!/usr/bin/env python3
"""Build smserve images from docker/matrix.toml (images.md §1, §5).

    python3 scripts/build_image.py --family pytorch --variant cpu
    python3 scripts/build_image.py --all                 # every `ready` row
    python3 scripts/build_image.py --list                # the matrix with statuses and tags
    python3 scripts/build_image.py --family pytorch --variant gpu          # on-demand row
    python3 scripts/build_image.py --family pytorch --variant inf1 --neuron-dir DIR   (or --stub)

What it does for a row:
  1. provides the engine (scripts/engine.sh) and the base image (scripts/bootstrap-base.sh);
  2. prepares the git-ignored build-context folder docker/context-extra/: the host's CA bundle,
     a pip.conf derived from the host pip configuration (find-links rewritten to the in-context wheel
     dir, host-local file:// indexes dropped, constraints copied), and only the host wheels the row
     names; the Dockerfiles use them in the builder stage only;
  3. runs the classic builder (DOCKER_BUILDKIT=0) with --network host, showing progress;
  4. tags smserve-<family>:<fw>-<variant>-py311[-cu<mm>]-<smserve version> and <fw>-<variant>;
  5. checks the size budget and writes build/images/<family>-<variant>.json.
Exit status: 0 built (or nothing to do), 1 build/budget failure, 2 row not buildable as asked.
"""
from __future__ import annotations

import argparse
import configparser
import contextlib
import datetime as dt
import fcntl
import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MATRIX = REPO / "docker" / "matrix.toml"
EXTRA = REPO / "docker" / "context-extra"
EXTRA_IN_IMAGE = "/tmp/smserve-build"
SOURCE_URL = "https://github.com/smserve/smserve"
DOCKERIGNORE = REPO / ".dockerignore"


def log(msg: str) -> None:
    print(f"[build_image] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------- matrix
def load_matrix() -> dict:
    with open(MATRIX, "rb") as f:
        return tomllib.load(f)


def smserve_version() -> str:
    with open(REPO / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]["version"]


def cuda_tag(row: dict) -> str:
    cuda = row.get("cuda")
    return "-cu" + cuda.replace(".", "") if cuda else ""


def tags_for(matrix: dict, row: dict) -> tuple[str, str]:
    fam = matrix["families"][row["family"]]
    fw = fam["framework_version"]
    repo = f"smserve-{row['family']}"
    full = f"{repo}:{fw}-{row['variant']}-py311{cuda_tag(row)}-{smserve_version()}"
    moving = f"{repo}:{fw}-{row['variant']}"
    return full, moving


def find_row(matrix: dict, family: str, variant: str) -> dict:
    for row in matrix["rows"]:
        if row["family"] == family and row["variant"] == variant:
            return row
    raise SystemExit(f"build_image: no matrix row {family} × {variant} in {MATRIX.relative_to(REPO)}")


# ---------------------------------------------------------------------------------- host config
def host_pip_config() -> dict[str, str]:
    """Effective pip settings of the host: `pip config list` (files) overlaid by PIP_* env vars."""
    vals: dict[str, str] = {}
    try:
        out = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True,
                             text=True, check=False, env={k: v for k, v in os.environ.items()
                                                         if not k.startswith("PIP_")}).stdout
    except OSError:
        out = ""
    for line in out.splitlines():
        m = re.match(r"^([^.]*)\.([A-Za-z0-9_-]+)='(.*)'$", line.strip())
        if m and m.group(1) in ("global", "install", "download"):
            vals[m.group(2)] = m.group(3)
    for k, v in os.environ.items():
        if k.startswith("PIP_") and k not in ("PIP_CONFIG_FILE",):
            vals[k[4:].lower().replace("_", "-")] = v
    return vals


def _split(v: str) -> list[str]:
    return [x for x in re.split(r"\s+", v.strip()) if x]


def prepare_context(row: dict) -> None:
    """Fill docker/context-extra/ (git-ignored) for one build. Nothing here reaches the final image."""
    cfg = host_pip_config()
    wheels_dir = EXTRA / "wheels"
    neuron_dir = EXTRA / "neuron"
    EXTRA.mkdir(parents=True, exist_ok=True)
    wheels_dir.mkdir(exist_ok=True)
    neuron_dir.mkdir(exist_ok=True)

    # CA bundle: the host pip cert (it carries the host's extra CAs), else the system bundle.
    cert = Path(cfg.get("cert") or "/etc/ssl/certs/ca-certificates.crt")
    if not cert.is_file():
        cert = Path("/etc/ssl/certs/ca-certificates.crt")
    shutil.copyfile(cert, EXTRA / "ca-bundle.crt")

    # Constraints file(s): concatenated into one in-context file.
    cons_lines: list[str] = []
    for c in _split(cfg.get("constraint", "")):
        p = Path(c.removeprefix("file://"))
        if p.is_file():
            cons_lines.append(f"# from host pip constraint file {p.name}")
            cons_lines += [ln for ln in p.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    (EXTRA / "constraints.txt").write_text("\n".join(cons_lines) + "\n")

    # Wheels: only those the row names, from the host find-links directories.
    wanted = row.get("wheels", [])
    keep: set[str] = set()
    link_dirs = [Path(x.removeprefix("file://")) for x in _split(cfg.get("find-links", ""))]
    for pattern in wanted:
        found = None
        for d in link_dirs:
            if d.is_dir():
                for f in sorted(d.iterdir()):
                    if fnmatch.fnmatch(f.name, pattern):
                        found = f
                        break
            if found:
                break
        if not found:
            raise SystemExit(f"build_image: wheel {pattern!r} not found in the host find-links "
                             f"directories {[str(d) for d in link_dirs]}")
        dst = wheels_dir / found.name
        keep.add(found.name)
        if not (dst.exists() and dst.stat().st_size == found.stat().st_size):
            dst.unlink(missing_ok=True)
            try:
                os.link(found, dst)
            except OSError:
                shutil.copy2(found, dst)
    for f in wheels_dir.iterdir():
        if f.name not in keep:
            f.unlink()

    # pip.conf for the builder stage: remote indexes kept, host-local file:// indexes dropped.
    remote = lambda u: u.startswith(("http://", "https://"))  # noqa: E731
    pc = configparser.ConfigParser()
    pc["global"] = {}
    g = pc["global"]
    if remote(cfg.get("index-url", "")):
        g["index-url"] = cfg["index-url"]
    extra = [u for u in _split(cfg.get("extra-index-url", "")) if remote(u)]
    if extra:
        g["extra-index-url"] = " ".join(extra)
    if cfg.get("trusted-host"):
        g["trusted-host"] = cfg["trusted-host"]
    for k in ("timeout", "default-timeout", "retries"):
        if cfg.get(k):
            g["timeout" if k == "default-timeout" else k] = cfg[k]
    g["cert"] = f"{EXTRA_IN_IMAGE}/ca-bundle.crt"
    g["find-links"] = f"{EXTRA_IN_IMAGE}/wheels"
    g["constraint"] = f"{EXTRA_IN_IMAGE}/constraints.txt"
    g["no-cache-dir"] = "true"
    g["disable-pip-version-check"] = "true"
    with open(EXTRA / "pip.conf", "w") as f:
        f.write("# generated by scripts/build_image.py from the host pip configuration; build stages only\n")
        pc.write(f)

    # Project license (if the repository has one) and the Neuron package dir (inf1).
    for n in ("LICENSE", "LICENSE.txt"):
        if (REPO / n).is_file():
            shutil.copyfile(REPO / n, EXTRA / "LICENSE")
            break
    else:
        (EXTRA / "LICENSE").unlink(missing_ok=True)
    for extra in (neuron_dir, EXTRA / "tfs", EXTRA / "neo-libdlr"):  # emptied for every build: only the row
        # that asks fills them
        shutil.rmtree(extra, ignore_errors=True)
        extra.mkdir()
        (extra / ".keep").write_text("")


def ensure_dockerignore() -> None:
    """The context is the repository root: send only what the Dockerfiles COPY."""
    families = "".join(f"!{f}/pyproject.toml\n!{f}/requirements*.txt\n!{f}/venv-setup.py\n!{f}/smserve_{f}\n"
                       for f in load_matrix()["families"])  # never a family's tests/ or example/
    want = (
        "# generated/maintained by scripts/build_image.py: the docker build context is an allow-list\n"
        "*\n"
        "!pyproject.toml\n!README.md\n!LICENSE\n!smserve\n!requirements/core.txt\n"
        + families +
        "!docker/smserve-entrypoint\n!docker/serve\n!docker/context-extra\n"
        "!scripts/gen_licenses.py\n!scripts/slim_venv.py\n!scripts/verify_venv.py\n"
        "**/__pycache__\n**/*.pyc\n"
    )
    if not DOCKERIGNORE.exists() or DOCKERIGNORE.read_text() != want:
        DOCKERIGNORE.write_text(want)


# ------------------------------------------------------------------------------------- docker
def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, **kw)


def provide_engine_and_base(need_base: bool) -> None:
    if run([str(REPO / "scripts" / "engine.sh")]).returncode != 0:
        raise SystemExit(1)
    if need_base and run([str(REPO / "scripts" / "bootstrap-base.sh")]).returncode != 0:
        raise SystemExit(1)


def image_exists(ref: str) -> bool:
    return run(["docker", "image", "inspect", ref], capture_output=True).returncode == 0


def image_size(ref: str) -> int:
    return int(run(["docker", "image", "inspect", "-f", "{{.Size}}", ref], capture_output=True,
                   text=True, check=True).stdout.strip())


def git(*args: str) -> str:
    r = run(["git", "-C", str(REPO), *args], capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else ""


def docker_build(cmd: list[str]) -> int:
    """Run a classic-builder build, echoing progress with elapsed time."""
    env = dict(os.environ, DOCKER_BUILDKIT="0")
    t0 = time.monotonic()
    log("$ DOCKER_BUILDKIT=0 " + " ".join(cmd))
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                         bufsize=1)
    assert p.stdout
    step_re = re.compile(r"^Step \d+/\d+")
    for line in p.stdout:
        line = line.rstrip("\n")
        el = time.monotonic() - t0
        stamp = f"[{int(el) // 60:02d}:{int(el) % 60:02d}]"
        if step_re.match(line):
            print(f"{stamp} {line}", flush=True)
        elif line.strip():
            print(f"{stamp}   {line}", flush=True)
    return p.wait()


def build_row(matrix: dict, row: dict, args) -> int:
    family, variant = row["family"], row["variant"]
    status = row.get("status", "not-implemented")
    fam = matrix["families"][family]
    full, moving = tags_for(matrix, row)
    name = f"{family} × {variant}"

    if status == "not-implemented":
        log(f"{name}: NOT IMPLEMENTED — {row.get('note', 'no Dockerfile yet')}; nothing built")
        return 2
    neuron = None
    if status == "needs-neuron-dir":
        ndir = args.neuron_dir or os.environ.get("SMSERVE_NEURON_DIR")
        if ndir:
            neuron = Path(ndir).resolve()
            if not neuron.is_dir() or not any(neuron.iterdir()):
                log(f"{name}: Neuron package directory {neuron} is missing or empty")
                return 2
        elif not args.stub:
            log(f"{name}: NEEDS A NEURON PACKAGE DIRECTORY. The Neuron frameworks (torch-neuron, "
                "mxnet-neuron, neuron-cc, aws-neuron-tools) are not on PyPI (placeholders only, neo.md §9.3). "
                "Pass --neuron-dir DIR (or SMSERVE_NEURON_DIR) holding the operator's wheels/.debs, or "
                "--stub to build a stub image labelled ai.smserve.neuron=absent.")
            return 2

    if row.get("needs_neo_libdlr") and not (args.neo_libdlr or os.environ.get("SMSERVE_NEO_LIBDLR")):
        log(f"{name}: NEEDS A CUDA BUILD OF libdlr. The dlr==1.6.0 wheel's library runs on CPUs only and no DLR "
            "with CUDA is on PyPI (neo.md §7.3, §7.4). Build DLR with CUDA (and TensorRT for Neo GPU artifacts) "
            "and pass --neo-libdlr PATH (or SMSERVE_NEO_LIBDLR); the gpu image serves every model with it.")
        return 2
    dockerfile = REPO / row.get("dockerfile", fam["dockerfile"])
    if not dockerfile.is_file():
        log(f"{name}: {dockerfile.relative_to(REPO)} does not exist; nothing built")
        return 2
    for p in (fam.get("pins"),):
        if status != "needs-neuron-dir" and p and not (REPO / p).is_file():
            log(f"{name}: pins file {p} does not exist; nothing built")
            return 2

    base = row.get("base", matrix["defaults"]["base"])
    is_inf1 = status == "needs-neuron-dir"
    provide_engine_and_base(need_base=True)
    if is_inf1 and not image_exists(base):
        log(f"{name}: building the family cpu image first ({base})")
        rc = build_row(matrix, find_row(matrix, family, "cpu"), args)
        if rc:
            return rc

    with build_lock():
        return _build_locked(matrix, row, args, neuron, base, is_inf1)


@contextlib.contextmanager
def build_lock():
    """docker/context-extra/ is shared by all builds of this checkout: one build at a time.

    The lock file lives outside the build context so it never touches a layer's cache key."""
    lock = REPO / "build" / "image-build.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log("another build of this checkout is running; waiting for it ...")
            fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def build_arguments(matrix: dict, row: dict, base: str) -> dict[str, str]:
    """The --build-arg values that select the family and the row in docker/Dockerfile (inf1: the base only)."""
    if row.get("status") == "needs-neuron-dir":
        return {"BASE_IMAGE": base}
    fam = matrix["families"][row["family"]]
    return {
        "BASE_IMAGE": base,
        "FAMILY": row["family"],
        "VARIANT": row["variant"],
        "FRAMEWORK": fam["framework"],
        "FRAMEWORK_TITLE": fam["framework_title"],
        "FRAMEWORK_VERSION": fam["framework_version"],
        "FRAMEWORK_SPEC": row.get("framework_spec", ""),
        **row.get("build_args", {}),
    }


def _build_locked(matrix: dict, row: dict, args, neuron: Path | None, base: str, is_inf1: bool) -> int:
    family, variant = row["family"], row["variant"]
    fam = matrix["families"][family]
    full, moving = tags_for(matrix, row)
    name = f"{family} × {variant}"
    dockerfile = REPO / row.get("dockerfile", fam["dockerfile"])
    prepare_context(row)
    if neuron:
        shutil.copytree(neuron, EXTRA / "neuron", dirs_exist_ok=True)
    tfs_binary = args.tfs_binary or os.environ.get("SMSERVE_TFS_BINARY") if family == "tensorflow" else None
    if tfs_binary:
        binary = Path(tfs_binary).resolve()
        if not binary.is_file() or not os.access(binary, os.X_OK):
            log(f"{name}: --tfs-binary {binary} is not an executable file")
            return 2
        shutil.copy2(binary, EXTRA / "tfs" / "tensorflow_model_server")
    neo_libdlr = args.neo_libdlr or os.environ.get("SMSERVE_NEO_LIBDLR") if family == "neo" else None
    if neo_libdlr:
        library = Path(neo_libdlr).resolve()
        if not library.is_file() or library.read_bytes()[:4] != b"\x7fELF":
            log(f"{name}: --neo-libdlr {library} is not a shared library")
            return 2
        shutil.copy2(library, EXTRA / "neo-libdlr" / "libdlr.so")
    ensure_dockerignore()

    epoch = os.environ.get("SOURCE_DATE_EPOCH") or git("log", "-1", "--format=%ct") or str(int(time.time()))
    created = dt.datetime.fromtimestamp(int(epoch), dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    rev = git("rev-parse", "HEAD") or "unknown"
    if git("status", "--porcelain", "--untracked-files=no", "--", "smserve", "docker", "requirements",
           "pyproject.toml", f"{family}/pyproject.toml", f"{family}/requirements.txt", f"{family}/smserve_{family}"):
        rev += "-dirty"
    build_args = build_arguments(matrix, row, base)
    if not is_inf1:
        build_args.update({"SMSERVE_VERSION": smserve_version(), "VCS_REF": rev, "CREATED": created,
                           "SOURCE_URL": os.environ.get("SMSERVE_SOURCE_URL", SOURCE_URL)})
    labels = dict(row.get("labels", {}))
    if family == "tensorflow" and not is_inf1:  # images.md §3: which TF Serving backend the image runs
        labels["ai.smserve.tf-backend"] = "tfs" if tfs_binary else "builtin"
    if family == "neo" and not is_inf1:  # neo.md §7.5: a DLR 1.10 library for Treelite 1.x-3.x models
        labels["ai.smserve.neo-libdlr-treelite1"] = "present" if neo_libdlr else "absent"
    if is_inf1:
        labels["ai.smserve.neuron"] = "present" if neuron else "absent"
        labels["ai.smserve.variant"] = "inf1"
        labels["org.opencontainers.image.version"] = f"{fam['framework_version']}-inf1-py311-{smserve_version()}"
    cmd = ["docker", "build", "--force-rm", "--network", "host", "-f", str(dockerfile), "-t", full, "-t", moving]
    if row.get("target"):
        cmd += ["--target", row["target"]]
    if args.no_cache:
        cmd.append("--no-cache")
    if args.pull:
        pass  # never pull: no registry is reachable (images.md §5.1)
    for k, v in build_args.items():
        cmd += ["--build-arg", f"{k}={v}"]
    for k, v in labels.items():
        cmd += ["--label", f"{k}={v}"]
    cmd.append(str(REPO))

    log(f"{name}: building {full} (+ {moving}) from {dockerfile.relative_to(REPO)}, base {base}")
    t0 = time.monotonic()
    rc = docker_build(cmd)
    secs = time.monotonic() - t0
    if rc != 0:
        log(f"{name}: BUILD FAILED (exit {rc}) after {secs:.0f}s")
        return 1

    size = image_size(full)
    hard = matrix["defaults"]["hard_limit_mb"] * 1024 * 1024
    if "size_budget_over_base_mb" in row:
        budget = image_size(base) + row["size_budget_over_base_mb"] * 1_000_000
    else:
        budget = row["size_budget_mb"] * 1_000_000
    budget = min(budget, hard)
    report = {
        "family": family, "variant": variant, "tag": full, "moving_tag": moving,
        "id": run(["docker", "image", "inspect", "-f", "{{.Id}}", full], capture_output=True,
                  text=True).stdout.strip(),
        "size_bytes": size, "budget_bytes": budget, "build_seconds": round(secs, 1),
        "revision": rev, "created": created,
    }
    out = REPO / "build" / "images"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{family}-{variant}.json").write_text(json.dumps(report, indent=2) + "\n")
    log(f"{name}: built {full} in {secs:.0f}s, size {size / 1e6:.0f} MB (budget {budget / 1e6:.0f} MB)")
    if size > budget:
        log(f"{name}: SIZE BUDGET EXCEEDED: {size / 1e6:.0f} MB > {budget / 1e6:.0f} MB")
        return 1
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description="Build smserve images from docker/matrix.toml")
    ap.add_argument("--family")
    ap.add_argument("--variant")
    ap.add_argument("--all", action="store_true", help="build every row with status 'ready'")
    ap.add_argument("--list", action="store_true", help="print the matrix and exit")
    ap.add_argument("--print-tag", action="store_true", help="print the row's full tag and exit")
    ap.add_argument("--neuron-dir", help="inf1: operator-supplied Neuron package directory")
    ap.add_argument("--stub", action="store_true", help="inf1: build a stub without Neuron packages")
    ap.add_argument("--tfs-binary", help="tensorflow: an operator-supplied tensorflow_model_server binary to include "
                                         "(also SMSERVE_TFS_BINARY); without it the image runs the built-in backend")
    ap.add_argument("--neo-libdlr", help="neo: an operator-built libdlr.so (DLR 1.10, neo.md §7.4) that serves "
                                         "Treelite 1.x-3.x models (also SMSERVE_NEO_LIBDLR); the image's own "
                                         "library (dlr 1.6.0) runs Treelite 0.9x and TVM models")
    ap.add_argument("--no-cache", action="store_true")
    ap.add_argument("--pull", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    matrix = load_matrix()

    if args.list:
        print(f"{'family':<11} {'variant':<8} {'status':<17} {'budget':>8}  tag")
        for row in matrix["rows"]:
            full, _ = tags_for(matrix, row)
            b = (f"{row['size_budget_mb']}MB" if "size_budget_mb" in row
                 else f"+{row.get('size_budget_over_base_mb', '?')}MB")
            print(f"{row['family']:<11} {row['variant']:<8} {row['status']:<17} {b:>8}  {full}"
                  + (f"   ({row['note']})" if row.get("note") else ""))
        return 0

    if args.all:
        rcs = []
        for row in matrix["rows"]:
            if row["status"] == "ready":
                rcs.append(build_row(matrix, row, args))
            else:
                what = {"on-demand": "built only when asked explicitly (--family/--variant)",
                        "needs-neuron-dir": "needs --neuron-dir (or --stub)",
                        }.get(row["status"], "NOT IMPLEMENTED" + (f": {row['note']}" if row.get("note") else ""))
                log(f"skip {row['family']} × {row['variant']} [{row['status']}]: {what}")
        return 1 if any(rc == 1 for rc in rcs) else 0

    if not (args.family and args.variant):
        ap.error("give --family and --variant, or --all, or --list")
    row = find_row(matrix, args.family, args.variant)
    if args.print_tag:
        print(tags_for(matrix, row)[0])
        return 0
    return build_row(matrix, row, args)


if __name__ == "__main__":
    sys.exit(main())
