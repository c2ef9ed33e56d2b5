"""images.md §6 checklist: what the built image contains (no server needed).

Each test names its checklist item: test_images_<n>_... is images.md §6 item n. The suite runs against the image
of SMSERVE_TEST_FAMILY (`make test-<family>-container` sets it); what a family's image must hold
(framework, version, lock file, size budget) is read from docker/matrix.toml, the file the images are built from.
"""
from __future__ import annotations

import glob
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from .conftest import FAMILY, REPO, VARIANT, docker, make_model_dir, run_in, sh

pytestmark = pytest.mark.container


def _matrix() -> dict:
    import tomllib

    return tomllib.loads((REPO / "docker" / "matrix.toml").read_text())


MATRIX = _matrix()
FAMILY_ROW = MATRIX["families"][FAMILY]
ROW = next(r for r in MATRIX["rows"] if r["family"] == FAMILY and r["variant"] == VARIANT)
FRAMEWORK = FAMILY_ROW["framework"]                                  # the import name: torch, mxnet
FRAMEWORK_PIN = ROW["framework_spec"].partition("==")[2]             # 2.13.0+cpu, 1.9.1
FRAMEWORK_DIST = ROW["framework_spec"].partition("==")[0]             # torch, mxnet, tensorflow-cpu
# what the build itself imports besides the core and the framework (docker/Dockerfile IMPORT_CHECK)
IMPORT_CHECK = ROW.get("build_args", {}).get("IMPORT_CHECK", "numpy, scipy")
only = {family: pytest.mark.skipif(FAMILY != family, reason=f"checklist item of the {family} images")
        for family in MATRIX["families"]}

OCI = ("title", "version", "revision", "created", "source", "licenses", "description")
SMSERVE = ("family", "variant", "framework", "framework-version", "python", "os")


def test_images_1_capability_labels(labels):
    """images §6 item 1, core §21 item 120: both SageMaker capability labels on the image."""
    assert labels.get("com.amazonaws.sagemaker.capabilities.accept-bind-to-port") == "true"
    assert labels.get("com.amazonaws.sagemaker.capabilities.multi-models") == "true"


def test_images_2_cpu_image_has_no_cuda_label(labels):
    # GPU images carry the label; the cpu image must not claim a CUDA version.
    if labels.get("ai.smserve.variant") == "gpu":
        assert labels.get("com.amazonaws.sagemaker.inference.cuda.verified_versions")
    else:
        assert "com.amazonaws.sagemaker.inference.cuda.verified_versions" not in labels
        assert labels.get("ai.smserve.cuda") == "none"


def test_images_3_oci_and_smserve_labels(labels):
    missing = [f"org.opencontainers.image.{k}" for k in OCI if not labels.get(f"org.opencontainers.image.{k}")]
    missing += [f"ai.smserve.{k}" for k in SMSERVE if not labels.get(f"ai.smserve.{k}")]
    assert not missing, missing
    assert labels["ai.smserve.family"] == FAMILY
    assert labels["ai.smserve.variant"] == VARIANT
    assert labels["ai.smserve.framework"] == FRAMEWORK
    assert labels["ai.smserve.framework-version"] == FAMILY_ROW["framework_version"]
    assert labels["ai.smserve.python"] == "3.11"
    assert labels["ai.smserve.os"] == "debian-12"
    assert not [k for k in labels if k.startswith("com.amazonaws.ml.engines.sagemaker.dlc")]


def test_images_4_python_311(image):
    r = run_in(image, "python", "--version")
    assert r.returncode == 0, r.stderr
    assert re.match(r"Python 3\.11\.\d+", r.stdout.strip()), r.stdout
    r = run_in(image, "python", "-c", "import sys; print(sys.prefix, sys.executable)")
    assert r.stdout.split() == ["/opt/smserve/venv", "/opt/smserve/venv/bin/python"], r.stdout


def test_images_5_entrypoint_and_cmd(inspect):
    cfg = inspect["Config"]
    assert cfg["Entrypoint"] == ["/usr/local/bin/smserve-entrypoint"]
    assert cfg["Cmd"] == ["serve"]
    assert "8080/tcp" in (cfg.get("ExposedPorts") or {})


def test_images_3_env(inspect):
    env = dict(e.split("=", 1) for e in inspect["Config"]["Env"])
    assert env["PATH"].split(":")[0] == "/opt/smserve/venv/bin"
    for k, v in {"PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1", "LANG": "C.UTF-8", "TEMP": "/tmp",
                 "TMPDIR": "/tmp", "SAGEMAKER_SERVING_MODULE": "smserve.serving:main",
                 "SMSERVE_FAMILY": FAMILY, "SMSERVE_VARIANT": VARIANT}.items():
        assert env.get(k) == v, (k, env.get(k))
    assert "PIP_CONFIG_FILE" not in env


def test_images_3_serving_module_resolves_to_serve(image):
    """images §3: SAGEMAKER_SERVING_MODULE names a module:function that exists and is what `serve` runs."""
    r = run_in(image, "python", "-c", "import importlib, os, smserve.cli; "
               "module, _, name = os.environ['SAGEMAKER_SERVING_MODULE'].partition(':'); "
               "print(getattr(importlib.import_module(module), name) is smserve.cli.serve_entry)")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "True"


def test_images_6_serve_on_path(image):
    r = sh(image, "test -x /usr/local/bin/serve && test -x /usr/local/bin/smserve-entrypoint && command -v serve "
                  "&& command -v smserve && command -v tini")
    assert r.returncode == 0, r.stdout + r.stderr


def test_images_7_no_java_nginx_compilers(image):
    tools = ["java", "javac", "nginx", "gcc", "cc", "c++", "g++", "clang", "make", "ld", "as"]
    r = sh(image, " ; ".join(f"command -v {t} || true" for t in tools)
           + " ; find /usr/lib/jvm /usr/include -type f 2>/dev/null | head -5 || true")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "", f"present in the runtime image: {r.stdout}"


def test_images_8_no_caches_lists_or_build_credentials(image):
    script = r"""
    found=""
    for p in /root/.cache/pip /root/.cache /var/cache/apt/archives/*.deb /var/cache/apt/*.bin /tmp/smserve-build \
             /etc/pip.conf /etc/xdg/pip /root/.config/pip /root/.pip /opt/smserve/pip.conf; do
      [ -e "$p" ] && found="$found $p"
    done
    ls /var/lib/apt/lists 2>/dev/null | grep -v -e '^partial$' -e '^lock$' | sed 's|^|/var/lib/apt/lists/|'
    echo "$found"
    find / -xdev \( -name pip.conf -o -name 'ca-bundle.crt' -o -name 'constraints.txt' -o -name '*.whl' \
         -o -path '*/context-extra*' \) -not -path '/proc/*' 2>/dev/null
    """
    r = sh(image, script)
    assert r.returncode == 0, r.stderr
    leftovers = r.stdout.split()
    # pip's and setuptools' own vendored wheels (ensurepip) are part of Python, not build inputs.
    leftovers = [p for p in leftovers if not p.startswith(("/usr/share/python-wheels/", "/usr/lib/python3"))]
    assert leftovers == [], leftovers


def _host_index_names() -> set[str]:
    """Package-index and mirror host names configured on the build host (apt sources, pip config)."""
    names: set[str] = set()
    for f in glob.glob("/etc/apt/sources.list") + glob.glob("/etc/apt/sources.list.d/*"):
        try:
            text = Path(f).read_text()
        except OSError:
            continue
        for url in re.findall(r"\b(?:https?|ftp)://[^\s\]]+", text):
            host = urlsplit(url).hostname
            if host:
                names.add(host)
    out = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True).stdout
    for url in re.findall(r"https?://[^\s']+", out):
        if urlsplit(url).hostname:
            names.add(urlsplit(url).hostname)
    m = re.search(r"trusted-host='([^']*)'", out)
    if m:
        names.update(m.group(1).split())
    # pip's built-in default index is part of pip itself, not host configuration.
    names -= {"pypi.org", "files.pythonhosted.org"}
    return names


def test_images_9_no_index_or_mirror_host_names(image):
    names = sorted(_host_index_names())
    if not names:
        pytest.skip("the build host configures no package-index or mirror host name")
    pattern = " ".join(f"-e {n}" for n in names)
    r = sh(image, f"grep -rIlF {pattern} /etc /opt/smserve 2>/dev/null; true", timeout=600)
    assert r.stdout.strip() == "", f"host names {names} found in: {r.stdout}"


def test_images_10_pip_check(image):
    """Clean, except the one line the matrix row allows (tensorflow-serving-api declares the full tensorflow
    wheel, which the row replaces with tensorflow-cpu: the same line the build accepts)."""
    r = run_in(image, "python", "-m", "pip", "check")
    allowed = ROW.get("build_args", {}).get("PIP_CHECK_ALLOWED")
    broken = [line for line in r.stdout.splitlines() if line.strip() and line != allowed]
    if allowed is None:
        assert r.returncode == 0, r.stdout + r.stderr
        assert "No broken requirements found" in r.stdout
    assert broken == [] or broken == ["No broken requirements found."], r.stdout + r.stderr


def test_images_11_ldd_site_packages(image):
    # Libraries that auditwheel bundles in <pkg>.libs/ have no RPATH of their own; at run time the loader
    # finds their siblings through the extension module's RPATH ($ORIGIN/../<pkg>.libs). ldd on such a
    # library alone therefore gets that directory on LD_LIBRARY_PATH, mirroring the real load.
    script = ("find /opt/smserve/venv/lib/python3.11/site-packages -name '*.so*' -type f "
              "| while read -r f; do d=$(dirname \"$f\"); "
              "case \"$d\" in *.libs) out=$(LD_LIBRARY_PATH=\"$d\" ldd \"$f\" 2>&1) || true;; "
              "*) out=$(ldd \"$f\" 2>&1) || true;; esac; "
              "echo \"$out\" | grep -q 'not found' && echo \"$f: $(echo \"$out\" | grep 'not found' | tr -s ' \\t' ' ')\"; "
              "done; true")
    r = sh(image, script, timeout=600)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "", r.stdout


@only["pytorch"]
def test_images_12_torch_cpu_build(image):
    r = run_in(image, "python", "-c", "import torch; print(torch.__version__, torch.version.cuda)")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["2.13.0+cpu", "None"]


@only["tensorflow"]
def test_images_14_tensorflow_serving_apis_and_backend_label(image, labels):
    """images.md item 14: the stubs import, TensorFlow runs, no Pillow (tensorflow.md §4), and the backend label
    says whether a tensorflow_model_server binary was built in."""
    r = sh(image, "python -c 'import tensorflow_serving.apis.prediction_service_pb2_grpc, tensorflow as tf; "
                  "print(tf.__version__, float(tf.reduce_sum(tf.ones((2, 2)))))' 2>/dev/null; "
                  "python -c 'import PIL' 2>/dev/null && echo pillow || echo no-pillow; "
                  "command -v tensorflow_model_server || echo no-binary")
    assert r.returncode == 0, r.stderr
    version, total, pillow, binary = r.stdout.split()
    assert (version, total, pillow) == ("2.21.0", "4.0", "no-pillow"), r.stdout
    assert labels["ai.smserve.tf-backend"] == ("builtin" if binary == "no-binary" else "tfs"), (labels, binary)


@only["mxnet"]
def test_images_13_mxnet_imports_with_numpy_1_23_5(image):
    """images §6 item 13 (mxnet.md §10): numpy is 1.23.5 and `import mxnet` works; an NDArray computes."""
    r = run_in(image, "python", "-c", "import numpy, mxnet; print(numpy.__version__, mxnet.__version__, "
                                      "(mxnet.nd.ones((2, 2)) * 3).sum().asscalar())")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["1.23.5", "1.9.1", "12.0"], r.stdout


@only["neo"]
def test_neo_1_import_dlr_prints_no_notice_and_opens_no_connection(image):
    """neo.md §10 item 1: with networking disabled, `import dlr` and a DLRModel load print nothing about
    telemetry, no DNS failure, and no socket other than a local one is attempted (an audit hook watches)."""
    probe = ("import sys, socket\n"
             "attempts = []\n"
             "def hook(event, args):\n"
             "    if event in ('socket.connect', 'socket.getaddrinfo', 'socket.gethostbyname'):\n"
             "        attempts.append((event, str(args[1] if event == 'socket.connect' else args[0])))\n"
             "sys.addaudithook(hook)\n"
             "import dlr, dlr.counter.phone_home as ph\n"
             "print('MGR', ph.MGR is None, 'attempts', attempts)\n")
    r = run_in(image, "python", "-c", probe)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "MGR True attempts []", r.stdout
    assert "CALL HOME" not in r.stdout + r.stderr and "Traceback" not in r.stderr, r.stderr


@only["neo"]
def test_neo_2_telemetry_switch_is_off_in_the_image_and_the_root_can_be_read_only(image, containers, tmp_path):
    """neo.md §10 item 2: dlr/counter/ccm_config.json says enable_phone_home false; a model serves from a
    read-only root filesystem as a non-root user (no write to site-packages at run time)."""
    r = run_in(image, "python", "-c", "import json, importlib.util, pathlib; "
               "p = pathlib.Path(importlib.util.find_spec('dlr').submodule_search_locations[0]) / 'counter' / "
               "'ccm_config.json'; print(json.loads(p.read_text()))")
    assert r.returncode == 0, r.stderr
    assert "'enable_phone_home': False" in r.stdout, r.stdout
    model_dir = make_model_dir(tmp_path)
    c = containers(model_dir, run_args=("--read-only", "--tmpfs", "/tmp", "--user", "1000:1000"))
    c.wait_ready()
    import requests

    response = requests.post(c.url + "/invocations", json=[[1.0, 2.0, 3.0, 4.0]], timeout=30)
    assert response.status_code == 200, response.text
    assert "telemetry" not in c.logs().lower(), c.logs()[-2000:]


def test_images_5_2_import_smoke_without_network(image):
    # images.md §5.5: framework and smserve import with networking disabled (run_in uses --network none).
    r = run_in(image, "python", "-c", f"import smserve, smserve.server, {FRAMEWORK}, {IMPORT_CHECK}; print('ok')")
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


FAMILY_IN_IMAGE = r"""
import json, sys
from importlib import metadata
from pathlib import Path

import smserve, smserve.families

eps = {ep.name: ep.value for ep in metadata.entry_points(group="smserve.families")}
site = Path(smserve.__file__).parent.parent
family_pkg = Path(__import__(sys.argv[1]).__file__).parent
print(json.dumps({
    "entry_points": eps,
    "installed": list(smserve.families.installed_families()),
    "site": str(site), "family_site": str(family_pkg.parent),
    "editable": sorted(p.name for p in site.iterdir() if "__editable__" in p.name
                       or (p.suffix == ".pth" and "smserve" in p.read_text())),
    "family_files": sorted(str(p.relative_to(family_pkg)) for p in family_pkg.rglob("*") if p.suffix == ".py"),
    "tests_or_examples": sorted(str(p) for top in site.glob("smserve*") for p in top.rglob("*")
                                if p.name in ("example", "tests", "conftest.py"))
                         + sorted(str(p) for p in site.glob("*.py") if p.name.endswith("_models.py")
                                  or p.name in ("build_model.py", "inference.py") or p.name.startswith("test_")),
}))
"""


def test_layout_4_image_holds_the_core_and_one_family_as_normal_installs(image):
    """issue 7 item 4: smserve and smserve_<family> installed as wheels (no editable finder or .pth), the family's
    entry point equal to the static map, no other family, and none of the family's tests or examples."""
    import json

    from smserve.families import FAMILIES

    r = run_in(image, "python", "-c", FAMILY_IN_IMAGE, f"smserve_{FAMILY}")
    assert r.returncode == 0, r.stderr
    found = json.loads(r.stdout)
    assert found["entry_points"] == {FAMILY: FAMILIES[FAMILY]}
    assert found["installed"] == [FAMILY]
    assert found["family_site"] == found["site"] == "/opt/smserve/venv/lib/python3.11/site-packages"
    assert found["editable"] == [], found["editable"]
    assert found["tests_or_examples"] == [], found["tests_or_examples"]
    expected = sorted(str(p.relative_to(REPO / FAMILY / f"smserve_{FAMILY}"))
                      for p in (REPO / FAMILY / f"smserve_{FAMILY}").rglob("*.py"))
    assert found["family_files"] == expected


def test_images_16_size_within_budget(inspect):
    size = inspect["Size"]
    assert size <= ROW["size_budget_mb"] * 1_000_000, f"{size / 1e6:.0f} MB > {ROW['size_budget_mb']} MB"
    assert size <= MATRIX["defaults"]["hard_limit_mb"] * 1024 * 1024


LICENSE_NAME = FRAMEWORK_DIST.replace("-", "[-_]")  # the notices list distributions as their metadata names them


def test_images_20_license_notices(image):
    r = sh(image, "ls /usr/share/licenses/smserve; grep -c '^  License:' "
                  "/usr/share/licenses/smserve/THIRD_PARTY_NOTICES.txt; "
                  f"grep -A1 -iE '^({LICENSE_NAME}|numpy|smserve) ' /usr/share/licenses/smserve/THIRD_PARTY_NOTICES.txt; "
                  "head -3 /usr/share/licenses/smserve/LICENSE")
    assert r.returncode == 0, r.stderr
    assert "LICENSE" in r.stdout and "THIRD_PARTY_NOTICES.txt" in r.stdout and "third-party" in r.stdout
    assert "Apache License" in r.stdout
    for pkg in (LICENSE_NAME, "numpy", "smserve"):
        assert re.search(rf"^{pkg} \S+\n  License: \S", r.stdout, re.M | re.I), (pkg, r.stdout)


def test_images_3_bytecode_compiled_and_dirs(image):
    # site-packages compiled at build time; /opt/ml/model empty; /opt/ml/errors world-writable.
    r = sh(image, f"ls /opt/smserve/venv/lib/python3.11/site-packages/{FRAMEWORK}/__pycache__/__init__.cpython-311.pyc "
                  "/opt/smserve/venv/lib/python3.11/site-packages/smserve/__pycache__/server.cpython-311.pyc "
                  "&& test -z \"$(ls -A /opt/ml/model)\" && stat -c %a /opt/ml/errors")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip().splitlines()[-1] in ("777", "1777")


def test_images_21_pinned_package_list(image):
    """Same inputs → same package list: every lock-file pin is what the image holds (a full rebuild with
    SOURCE_DATE_EPOCH and a package-list diff is `make image BUILD_FLAGS=--no-cache` + this test)."""
    pins: dict[str, str] = {}
    for f in ("requirements/core.txt", FAMILY_ROW["pins"]):
        for line in (REPO / f).read_text().splitlines():
            m = re.match(r"^([A-Za-z0-9_.-]+)==([^\s;#]+)", line.strip())
            if m:
                pins[m.group(1).lower().replace("_", "-")] = m.group(2)
    pins[FRAMEWORK_DIST.lower()] = FRAMEWORK_PIN
    r = run_in(image, "python", "-m", "pip", "list", "--format=freeze")
    assert r.returncode == 0, r.stderr
    have = {}
    for line in r.stdout.splitlines():
        name, _, ver = line.partition("==")
        have[name.lower().replace("_", "-")] = ver
    wrong = {k: (v, have.get(k)) for k, v in pins.items() if have.get(k) != v}
    assert not wrong, wrong


def test_images_22_classic_builder_dockerfiles():
    files = sorted((REPO / "docker").glob("Dockerfile*"))
    assert files
    for f in files:
        text = f.read_text()
        assert not re.search(r"^\s*#\s*syntax\s*=", text, re.M | re.I), f
        assert not re.search(r"^\s*RUN\s+--mount", text, re.M), f
        assert not re.search(r"<<-?\s*['\"]?[A-Z]+", text), f"heredoc in {f}"


def test_images_23_base_bootstrapped_and_imported(image):
    base = docker("image", "inspect", "-f", "{{json .RepoDigests}} {{.Comment}}", "smserve-base:bookworm")
    digests, _, comment = base.stdout.strip().partition(" ")
    assert digests in ("[]", "null"), f"base image came from a registry: {digests}"
    assert "debootstrap" in comment, comment
    # the runtime image's bottom layer is the base's layer
    base_layers = docker("image", "inspect", "-f", "{{json .RootFS.Layers}}", "smserve-base:bookworm").stdout
    img_layers = docker("image", "inspect", "-f", "{{json .RootFS.Layers}}", image).stdout
    assert base_layers.strip().strip("[]").split(",")[0] == img_layers.strip().strip("[]").split(",")[0]
    assert (REPO / "build" / "base" / "dpkg-l.txt").is_file()
