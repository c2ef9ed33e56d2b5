"""neo.md §10 checklist (items 3-31, 33-37) through real HTTP: Neo models built on the fly (neo_models.py),
`smserve serve` as a host process or the neo image (SMSERVE_TEST_TARGET), answers checked against numpy
oracles and a local DLR run. Bad input gets the spec's status and body, and the next request succeeds."""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import requests

from tests.families import require_framework
from tests.harness import FAMILY, TARGET, served_path

require_framework("dlr")

import neo_models  # noqa: E402  (neo/tests, on sys.path through pytest's rootdir-relative import)

pytestmark = pytest.mark.skipif(FAMILY != "neo", reason="Neo family suite: set SMSERVE_TEST_FAMILY=neo")

CSV = "text/csv"
CPUS = len(os.sched_getaffinity(0))

BYOM_SCRIPT = """
import io
import json

import numpy as np

SEEN = {}


def neo_preprocess(payload, content_type):
    SEEN["type"] = type(payload).__name__
    SEEN["fail_post"] = content_type == "application/x-fail-post"
    if content_type == "application/x-raise":
        raise ValueError("bad payload on purpose")
    if content_type == "application/x-wrong-key":
        return {"nope": np.zeros((1, 4), dtype="float32")}
    if content_type == "application/x-list":
        return [1.0, 2.0, 3.0, 4.0]
    if content_type == "application/x-five":
        return np.arange(5, dtype="float32").reshape(1, 5)
    if content_type == "application/x-npy":
        return np.load(io.BytesIO(payload), allow_pickle=False)
    if isinstance(payload, bytes):
        payload = payload.decode("utf-8")
    if isinstance(payload, str):
        payload = json.loads(payload)
    return np.asarray(payload, dtype="float32").reshape(1, 4)


def neo_postprocess(result):
    if SEEN["fail_post"]:
        raise RuntimeError("postprocess failed on purpose")
    return json.dumps({"probabilities": result.tolist(), "payload_type": SEEN["type"]}), "application/vnd.smserve+json"
"""

ENV_SCRIPT = """
import json
import os

VARIABLES = ("OMP_NUM_THREADS", "TVM_NUM_THREADS", "TVM_BIND_THREADS", "TREELITE_BIND_THREADS")


def output_fn(prediction, accept):
    return json.dumps({"prediction": prediction.tolist(),
                       "env": {name: os.environ.get(name) for name in VARIABLES}}), "application/json"
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """Every model once: Treelite trees, the TVM classifier, RGB and grey image models."""
    root = tmp_path_factory.mktemp("neo-models")
    neo_models.treelite_trees(root)
    neo_models.tvm_classifier(root)
    neo_models.tvm_image_model(root, "image_rgb", channels=3, height=224, width=224)
    neo_models.tvm_image_model(root, "image_grey", channels=1, height=28, width=28)
    return root


def model_dir(built: Path, tmp: Path, name: str, code: dict[str, str] | None = None, drop: tuple = ()) -> Path:
    """A copy of a built model (plus code files), world-readable for the image's non-root user."""
    root = tmp / "model"
    shutil.copytree(built / name, root)
    for file in drop:
        (root / file).unlink()
    for relative, text in (code or {}).items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    for path in [tmp, root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return root


def rows_of(text: str) -> np.ndarray:
    return np.array([[float(v) for v in line.split(",")] for line in text.strip().split("\n")], dtype=np.float32)


@pytest.fixture(scope="module")
def trees(built, tmp_path_factory, module_servers):
    return module_servers(model_dir(built, tmp_path_factory.mktemp("trees"), "trees"))


@pytest.fixture(scope="module")
def byom(built, tmp_path_factory, module_servers):
    return module_servers(model_dir(built, tmp_path_factory.mktemp("byom"), "classifier",
                                    {"code/inference.py": BYOM_SCRIPT}))


@pytest.fixture(scope="module")
def image_rgb(built, tmp_path_factory, module_servers):
    return module_servers(model_dir(built, tmp_path_factory.mktemp("rgb"), "image_rgb"))


# ------------------------------------------------------------------ xgboost app (Treelite)
def test_neo_3_treelite_model_serves_csv_with_the_xgboost_app(trees, built):
    response = trees.post(data="1,2,3\n4,5,6\n7,8,9", content_type=CSV)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == CSV
    values = rows_of(response.text).reshape(-1)
    np.testing.assert_array_equal(values, neo_models.treelite_reference(neo_models.TREE_ROWS).reshape(-1))
    np.testing.assert_array_equal(values, local_dlr_run(built / "trees", neo_models.TREE_ROWS).reshape(-1))


def local_dlr_run(model: Path, rows: np.ndarray) -> np.ndarray:
    """The same model run by DLR here, in a child process: DLR's thread pool pins the CPU affinity of the
    process that runs it, which later servers started by this test process would inherit."""
    code = ("import sys, json, numpy as np; from dlr import DLRModel; "
            "x = np.array(json.loads(sys.argv[2]), dtype='float32'); "
            "print(json.dumps(np.asarray(DLRModel(sys.argv[1], 'cpu', 0).run(x)[0]).tolist()))")
    out = subprocess.run([sys.executable, "-c", code, str(model), json.dumps(rows.tolist())], capture_output=True,
                         text=True, timeout=60, env={**os.environ, "TVM_BIND_THREADS": "0"}, check=True)
    return np.asarray(json.loads(out.stdout.strip().splitlines()[-1]), dtype=np.float32)


def test_neo_4_one_column_output_is_one_csv_line_in_savetxt_format(trees):
    response = trees.post(data="1,2,3\n4,5,6\n7,8,9", content_type=CSV)
    assert response.text == "3.000000000000000000e+00,-3.000000000000000000e+00,3.000000000000000000e+00\n"


def test_neo_5_libsvm_missing_column_is_nan(trees):
    response = trees.post(data="1 0:1.0 2:3.0", content_type="text/x-libsvm")
    assert response.status_code == 200, response.text
    expected = neo_models.treelite_reference(np.array([[1.0, np.nan, 3.0]], dtype=np.float32))
    np.testing.assert_array_equal(rows_of(response.text).reshape(-1), expected.reshape(-1))
    # and column 1 given is not the same answer: the missing cell really went the default way
    given = neo_models.treelite_reference(np.array([[1.0, 9.0, 3.0]], dtype=np.float32))
    assert trees.post(data="1 0:1.0 1:9.0 2:3.0", content_type="text/libsvm").text.strip() == \
        ",".join("%.18e" % v for v in given.reshape(-1))


def test_neo_6_csv_delimiter_is_sniffed_and_single_column_falls_back_to_comma(trees):
    semicolons = trees.post(data="1;2;3\n4;5;6", content_type=CSV)
    assert semicolons.status_code == 200, semicolons.text
    np.testing.assert_array_equal(rows_of(semicolons.text).reshape(-1),
                                  neo_models.treelite_reference(neo_models.TREE_ROWS[:2]).reshape(-1))
    single = trees.post(data="1\n4\n7", content_type=CSV)
    assert single.status_code == 200, single.text
    expected = neo_models.treelite_reference(np.array([[1.0], [4.0], [7.0]], dtype=np.float32))
    np.testing.assert_array_equal(rows_of(single.text).reshape(-1), expected.reshape(-1))


def test_neo_7_xgboost_app_refuses_json_with_415(trees):
    response = trees.post(data="[[1, 2, 3]]", content_type="application/json")
    assert response.status_code == 415
    assert "text/csv" in response.json()["message"] and "text/libsvm" in response.json()["message"]


@pytest.mark.parametrize("body,needle", [("1,2\n4,5,6", "different numbers of columns"),
                                         ("1,abc,3", "must be numeric"),
                                         ("1 0:x", "is not index:value")])
def test_neo_xgboost_ragged_or_text_rows_are_400_and_the_next_request_succeeds(trees, body, needle):
    content_type = "text/libsvm" if ":" in body else CSV
    response = trees.post(data=body, content_type=content_type)
    assert response.status_code == 400, response.text
    assert response.json()["message"].startswith("ClientError:") and needle in response.json()["message"]
    assert trees.post(data="1,2,3", content_type=CSV).status_code == 200


# ------------------------------------------------------------------ BYOM (neo_preprocess / neo_postprocess)
def test_neo_8_byom_classifier_matches_numpy(byom):
    x = [[0.5, -1.0, 2.0, 0.25]]
    response = byom.post(data=json.dumps(x))
    assert response.status_code == 200, response.text
    got = np.asarray(response.json()["probabilities"], dtype=np.float32)
    assert np.max(np.abs(got - neo_models.classifier_reference(np.asarray(x)))) <= 1e-6


@pytest.mark.parametrize("content_type,kind", [("application/json", "list"), ("text/plain", "str"),
                                               ("application/json; charset=utf-8", "bytes")])
def test_neo_9_preprocess_payload_follows_mms_decoding(byom, content_type, kind):
    response = byom.post(data="[[1, 2, 3, 4]]", content_type=content_type)
    assert response.status_code == 200, response.text
    assert response.json()["payload_type"] == kind


def test_neo_9_npy_payload_arrives_as_bytes(byom):
    buffer = io.BytesIO()
    np.save(buffer, np.array([[1, 2, 3, 4]], dtype=np.float32))
    response = byom.post(data=buffer.getvalue(), content_type="application/x-npy")
    assert response.status_code == 200, response.text
    assert response.json()["payload_type"] == "bytes"


def assert_error_then_recovers(server, response, status, prefix):
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == status and body["message"].startswith(prefix), body
    assert "Traceback" not in response.text
    assert server.post(data="[[1, 2, 3, 4]]").status_code == 200  # the worker keeps serving


def test_neo_10_preprocess_exception_is_400(byom):
    response = byom.post(data="[1]", content_type="application/x-raise")
    assert_error_then_recovers(byom, response, 400, "ClientError: User-defined pre-processing function failed:")
    assert "bad payload on purpose" in response.json()["message"]


def test_neo_11_wrong_input_name_is_400_with_the_mismatch_text(byom):
    response = byom.post(data="[1]", content_type="application/x-wrong-key")
    assert_error_then_recovers(byom, response, 400, "ClientError: Input name(s) mismatch")
    message = response.json()["message"]
    assert "Expected data in input data" in message
    assert "The model does not accept the following inputs: nope" in message


def test_neo_12_list_return_is_400(byom):
    response = byom.post(data="[1]", content_type="application/x-list")
    assert_error_then_recovers(byom, response, 400, "ClientError: User-defined pre-processing function must "
                                                    "return either dict type or np.ndarray")


def test_neo_13_postprocess_exception_is_500_with_aws_text(byom):
    response = byom.post(data="[[1, 2, 3, 4]]", content_type="application/x-fail-post")
    assert_error_then_recovers(byom, response, 500, "Internal Server Error occured")
    assert "postprocess failed on purpose" not in response.text  # logged, never sent


def test_neo_13_postprocess_exception_is_logged_with_the_request_id(byom):
    response = byom.post(data="[[1, 2, 3, 4]]", content_type="application/x-fail-post")
    request_id = response.json()["request_id"]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        lines = [line for line in byom.logs().splitlines() if request_id in line]
        if any("Internal Server Error occured" in line for line in lines):
            break
        time.sleep(0.1)
    assert "postprocess failed on purpose" in byom.logs()


def test_neo_14_wrong_element_count_is_400_with_the_dlr_text(byom):
    response = byom.post(data="[1]", content_type="application/x-five")
    assert_error_then_recovers(byom, response, 400, "ClientError:")
    assert "Mismatch found in input data size" in response.json()["message"]


def test_neo_15_response_content_type_is_the_postprocess_type(byom):
    response = byom.post(data="[[1, 2, 3, 4]]")
    assert response.headers["Content-Type"] == "application/vnd.smserve+json"


def test_neo_16_missing_content_type_is_415(byom):
    response = byom.post(data="[[1, 2, 3, 4]]", content_type=None)
    assert_error_then_recovers(byom, response, 415, "Content-Type header is required")


# ------------------------------------------------------------------ where the script comes from (§2)
def sourcedir(path: Path, files: dict[str, str]) -> Path:
    """A sourcedir.tar.gz with exactly these members (names as given, `..` included)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            data = textwrap.dedent(text).encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    path.chmod(0o644)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def s3():
    """moto's S3 server on 127.0.0.1 (a real HTTP S3 API), with a bucket."""
    port = free_port()
    proc = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                requests.get(endpoint, timeout=1)
                break
            except requests.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        import boto3

        env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1",
               "AWS_ENDPOINT_URL_S3": endpoint}
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                              aws_access_key_id="testing", aws_secret_access_key="testing")
        client.create_bucket(Bucket="neo-code")
        yield client, env
    finally:
        proc.terminate()
        proc.wait(10)


def test_neo_17_s3_sourcedir_with_one_script_is_downloaded_and_used(built, tmp_path, serve, s3):
    client, env = s3
    archive = sourcedir(tmp_path / "upload" / "sourcedir.tar.gz", {"byom.py": BYOM_SCRIPT})
    client.upload_file(str(archive), "neo-code", "jobs/one/sourcedir.tar.gz")
    server = serve(model_dir(built, tmp_path, "classifier"),
                   {**env, "SAGEMAKER_SUBMIT_DIRECTORY": "s3://neo-code/jobs/one/sourcedir.tar.gz"})
    response = server.post(data="[[1, 2, 3, 4]]")
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "application/vnd.smserve+json"  # the downloaded script's answer
    assert "downloaded s3://neo-code/jobs/one/sourcedir.tar.gz" in server.logs()


def test_neo_17_s3_download_failure_stops_startup_with_the_s3_error(built, tmp_path, serve, s3):
    _client, env = s3
    server = serve(model_dir(built, tmp_path, "classifier"),
                   {**env, "SAGEMAKER_SUBMIT_DIRECTORY": "s3://neo-code/missing/sourcedir.tar.gz"}, ready=False)
    code, logs = server.wait_failed_start()
    assert code != 0
    assert "could not be downloaded" in logs and ("404" in logs or "Not Found" in logs), logs[-2000:]


def test_neo_18_archive_with_two_scripts_is_a_startup_error(built, tmp_path, serve, s3):
    client, env = s3
    archive = sourcedir(tmp_path / "upload" / "sourcedir.tar.gz", {"a.py": BYOM_SCRIPT, "lib/b.py": "X = 1\n"})
    client.upload_file(str(archive), "neo-code", "jobs/two/sourcedir.tar.gz")
    server = serve(model_dir(built, tmp_path, "classifier"),
                   {**env, "SAGEMAKER_SUBMIT_DIRECTORY": "s3://neo-code/jobs/two/sourcedir.tar.gz"}, ready=False)
    code, logs = server.wait_failed_start()
    assert code != 0
    assert "contains more than one *.py file (2 found: a.py, lib/b.py)" in logs, logs[-2000:]


def test_neo_18_naming_one_of_two_scripts_with_sagemaker_program_works(built, tmp_path, serve):
    root = model_dir(built, tmp_path, "classifier")
    archive = sourcedir(root / "sources" / "sourcedir.tar.gz", {"src/byom.py": BYOM_SCRIPT, "other.py": "X = 1\n"})
    for path in (root / "sources", archive):
        path.chmod(0o755 if path.is_dir() else 0o644)
    server = serve(root, {"SAGEMAKER_SUBMIT_DIRECTORY": str(served_path(root, archive)),
                          "SAGEMAKER_PROGRAM": "byom.py"})
    assert server.post(data="[[1, 2, 3, 4]]").headers["Content-Type"] == "application/vnd.smserve+json"


def test_neo_19_member_escaping_the_folder_is_refused(built, tmp_path, serve):
    root = model_dir(built, tmp_path, "classifier")
    archive = sourcedir(root / "sources" / "sourcedir.tar.gz", {"../evil.py": BYOM_SCRIPT})
    (root / "sources").chmod(0o755)
    server = serve(root, {"SAGEMAKER_SUBMIT_DIRECTORY": str(served_path(root, archive))}, ready=False)
    code, logs = server.wait_failed_start()
    assert code != 0
    assert "'../evil.py' is refused" in logs, logs[-2000:]


def test_neo_20_submit_directory_as_a_local_folder(built, tmp_path, serve):
    root = model_dir(built, tmp_path, "classifier", {"scripts/inference.py": BYOM_SCRIPT})
    server = serve(root, {"SAGEMAKER_SUBMIT_DIRECTORY": str(served_path(root, root / "scripts")),
                          "SAGEMAKER_PROGRAM": "inference.py"})
    assert server.post(data="[[1, 2, 3, 4]]").headers["Content-Type"] == "application/vnd.smserve+json"
    assert "user module       " + str(served_path(root, root / "scripts" / "inference.py")) in server.logs()


# ------------------------------------------------------------------ app defaults (§5)
def test_neo_21_tvm_model_without_script_serves_the_generic_app(built, tmp_path, serve):
    server = serve(model_dir(built, tmp_path, "classifier"))
    x = [[1.0, 2.0, 3.0, 4.0]]
    response = server.post(data=json.dumps(x))
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "application/json"
    np.testing.assert_allclose(np.asarray(response.json()), neo_models.classifier_reference(np.asarray(x)),
                               atol=1e-6)
    assert "Neo mode app (app generic)" in server.logs()


def encode_image(array: np.ndarray, fmt: str) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


def expected_scores(data: bytes, mode: str, size: tuple[int, int]) -> np.ndarray:
    """The app's preprocessing done here with the same Pillow: decode, convert, resize to (H, W) as AWS."""
    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(data)).convert(mode).resize(size), dtype=np.uint8)
    chw = pixels[np.newaxis] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
    return neo_models.image_reference(chw).reshape(-1)


def test_neo_22_rgb_png_to_a_224_model_returns_class_scores(image_rgb):
    rng = np.random.default_rng(7)
    png = encode_image(rng.integers(0, 256, size=(48, 64, 3), dtype=np.uint8), "PNG")
    response = image_rgb.post(data=png, content_type="image/png")
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "application/json"
    np.testing.assert_allclose(response.json(), expected_scores(png, "RGB", (224, 224)), rtol=1e-5)


def test_neo_23_grey_jpeg_to_a_one_channel_model(built, tmp_path, serve):
    server = serve(model_dir(built, tmp_path, "image_grey"))
    rng = np.random.default_rng(3)
    jpeg = encode_image(rng.integers(0, 256, size=(40, 30), dtype=np.uint8), "JPEG")
    response = server.post(data=jpeg, content_type="application/x-image")
    assert response.status_code == 200, response.text
    np.testing.assert_allclose(response.json(), expected_scores(jpeg, "L", (28, 28)), rtol=1e-5)


def test_neo_24_image_app_refuses_csv_listing_the_image_types(image_rgb):
    response = image_rgb.post(data="1,2,3", content_type=CSV)
    assert response.status_code == 415
    message = response.json()["message"]
    assert all(t in message for t in ("image/jpeg", "image/png", "application/x-image")), message


def test_neo_25_image_app_without_model_shapes_is_a_startup_error(built, tmp_path, serve):
    root = model_dir(built, tmp_path, "image_rgb", drop=("model-shapes.json",))
    server = serve(root, {"SMSERVE_NEO_APP": "image_classification"}, ready=False)
    code, logs = server.wait_failed_start()
    assert code != 0 and "Shape info must be given as model-shapes.json" in logs, logs[-2000:]


def test_neo_26_corrupt_image_is_400_and_the_next_request_succeeds(image_rgb):
    response = image_rgb.post(data=b"\x89PNG\r\n\x1a\nnot really", content_type="image/png")
    assert response.status_code == 400, response.text
    assert response.json()["message"].startswith("ClientError: Loading image data failed with exception:\n")
    png = encode_image(np.zeros((8, 8, 3), dtype=np.uint8), "PNG")
    assert image_rgb.post(data=png, content_type="image/png").status_code == 200


# ------------------------------------------------------------------ bad artifacts refused at startup (§7)
def failed_start(serve, root: Path, env: dict | None = None) -> str:
    server = serve(root, env or {}, ready=False)
    code, logs = server.wait_failed_start(timeout=30)
    assert code != 0, logs
    return logs


def test_neo_27_two_params_files_is_a_startup_error_naming_both(tmp_path, serve):
    logs = failed_start(serve, neo_models.two_params(tmp_path))
    assert "2 .params files (compiled.params, extra.params)" in logs, logs[-2000:]


def test_neo_28_gpu_meta_on_a_cpu_host_names_the_device(tmp_path, serve):
    logs = failed_start(serve, neo_models.tvm_classifier(tmp_path, target="gpu"))
    assert 'compiled model requires device type "gpu" but this container runs on "cpu"' in logs, logs[-2000:]


def test_neo_29_treelite_3_library_is_refused_naming_the_abi(tmp_path, serve):
    logs = failed_start(serve, neo_models.treelite3_abi(tmp_path))
    assert "uses the Treelite 1.x-3.x ABI" in logs and "Treelite 0.9x" in logs, logs[-2000:]


def test_neo_29_treelite_3_library_is_routed_to_an_operator_library_when_present(tmp_path, serve):
    """The operator's DLR 1.10 build is not obtainable here: a copy of the 1.6.0 library stands in for it, so the
    route shows in the log and in the load, which that library then refuses with DLR's own reason."""
    root = neo_models.treelite3_abi(tmp_path)
    operator = root / "operator" / "libdlr.so"
    operator.parent.mkdir()
    shutil.copyfile(neo_models.default_libdlr(), operator)
    for path in [tmp_path, root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    routed = served_path(root, operator)
    logs = failed_start(serve, root, {"SMSERVE_NEO_TREELITE1_LIBDLR": str(routed)})
    assert f"uses the Treelite 1.x-3.x ABI: served with {routed}" in logs, logs[-2000:]
    assert f"with {routed}: " in logs and "get_num_output_group" in logs, logs[-3000:]


def test_neo_30_tl2cgen_library_is_refused_within_10_seconds(tmp_path, serve):
    started = time.monotonic()
    logs = failed_start(serve, neo_models.tl2cgen_abi(tmp_path))
    assert time.monotonic() - started < 10
    assert "compiled by tl2cgen" in logs, logs[-2000:]


def test_neo_31_model_dir_libdlr_is_used_unless_use_default(tmp_path, serve):
    root = neo_models.own_libdlr(tmp_path)
    for path in [root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    own = served_path(root, root / "libdlr.so")
    server = serve(root)
    assert server.post(data="1,2,3", content_type=CSV).status_code == 200
    assert f"library {own}" in server.logs()
    server.stop()
    server = serve(root, {"SMSERVE_NEO_USE_DEFAULT_DLR": "true"})
    assert server.post(data="1,2,3", content_type=CSV).status_code == 200
    assert f"library {own}" not in server.logs() and "library /" in server.logs()


def test_neo_32_mme_two_models_with_different_libdlr_builds_both_serve(tmp_path, serve):
    """neo §14 item 32 (§7.3, core §13): on a multi-model endpoint, a model carrying its own libdlr.so (a build
    whose content differs from the image's) and a model on the image's library both serve, in turn and again;
    each model server binds its own library (never two builds in one process)."""
    root = tmp_path / "models"
    image_lib = neo_models.treelite_trees(root, "image_lib")
    own_lib = neo_models.own_libdlr(root, "own_lib")
    with open(own_lib / "libdlr.so", "ab") as library:  # trailing bytes: another build by content, still loadable
        library.write(b"\0smserve-test-build\0" * 64)
    for path in [root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    server = serve(root, {"SAGEMAKER_MULTI_MODEL": "true", "SMSERVE_MME_MODELS_ROOT": str(served_path(root))})
    for name, folder in (("image_lib", image_lib), ("own_lib", own_lib)):
        response = requests.post(server.url + "/models", json={"model_name": name,
                                                               "url": str(served_path(root, folder))}, timeout=120)
        assert response.status_code == 200, response.text
    expected = neo_models.treelite_reference(neo_models.TREE_ROWS).reshape(-1)
    for _ in range(3):
        for name in ("image_lib", "own_lib", "image_lib"):
            response = requests.post(f"{server.url}/models/{name}/invoke", data="1,2,3\n4,5,6\n7,8,9",
                                     headers={"Content-Type": CSV}, timeout=60)
            assert response.status_code == 200, (name, response.text)
            np.testing.assert_array_equal(rows_of(response.text).reshape(-1), expected)
    logs = server.logs()
    assert f"library {served_path(root, own_lib / 'libdlr.so')}" in logs, logs[-3000:]
    assert "Segmentation fault" not in logs and "exited with status" not in logs, logs[-3000:]


def test_neo_33_model_dir_libdlr_that_cannot_load_falls_back_with_a_warning(tmp_path, serve):
    root = neo_models.broken_libdlr(tmp_path)
    for path in [root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    server = serve(root)
    response = server.post(data="1,2,3\n4,5,6\n7,8,9", content_type=CSV)
    assert response.status_code == 200, response.text
    np.testing.assert_array_equal(rows_of(response.text).reshape(-1),
                                  neo_models.treelite_reference(neo_models.TREE_ROWS).reshape(-1))
    assert "cannot be loaded" in server.logs() and "using the image's DLR library" in server.logs()


# ------------------------------------------------------------------ workers, threads, device (§7.6)
def worker_count(logs: str) -> int:
    line = next(line for line in logs.splitlines() if line.strip().startswith("workers "))
    return int(line.split()[1])


def test_neo_34_35_treelite_defaults_one_worker_per_cpu_one_thread_no_pinning(built, tmp_path, serve):
    server = serve(model_dir(built, tmp_path, "trees", {"code/inference.py": ENV_SCRIPT}))
    response = server.post(data="[[1, 2, 3]]")
    assert response.status_code == 200, response.text
    assert worker_count(server.logs()) == CPUS
    env = response.json()["env"]
    assert env["OMP_NUM_THREADS"] == "1"
    assert env["TVM_BIND_THREADS"] == "0" and env["TREELITE_BIND_THREADS"] == "0"


def test_neo_34_35_tvm_defaults_one_worker_with_every_cpu(built, tmp_path, serve):
    server = serve(model_dir(built, tmp_path, "classifier", {"code/inference.py": ENV_SCRIPT}))
    response = server.post(data="[[1, 2, 3, 4]]")
    assert response.status_code == 200, response.text
    assert worker_count(server.logs()) == 1
    env = response.json()["env"]
    assert env["TVM_NUM_THREADS"] == str(CPUS)
    assert env["TVM_BIND_THREADS"] == "0" and env["TREELITE_BIND_THREADS"] == "0"


def test_neo_34_user_thread_and_worker_variables_win(built, tmp_path, serve):
    server = serve(model_dir(built, tmp_path, "classifier", {"code/inference.py": ENV_SCRIPT}),
                   {"MMS_NUM_WORKER": "2", "MMS_NUM_THREAD_PER_WORKER": "3", "TVM_BIND_THREADS": "1"})
    env = server.post(data="[[1, 2, 3, 4]]").json()["env"]
    assert worker_count(server.logs()) == 2
    assert env["TVM_NUM_THREADS"] == "3" and env["OMP_NUM_THREADS"] == "3" and env["TVM_BIND_THREADS"] == "1"


def test_neo_36_use_gpu_selects_the_gpu_device(built, tmp_path, serve):
    """No GPU here: the choice shows in the startup line and in DLR's refusal to run a CPU build on a GPU."""
    root = neo_models.tvm_classifier(tmp_path, with_meta=False)  # no .meta: nothing pins the device
    logs = failed_start(serve, root, {"USE_GPU": "1"})
    assert "device gpu" in logs, logs[-2000:]
    assert "on gpu" in logs, logs[-2000:]


def test_neo_37_toolkit_mode_with_only_output_fn_uses_dlr_defaults(built, tmp_path, serve):
    server = serve(model_dir(built, tmp_path, "classifier", {"code/inference.py": ENV_SCRIPT}))
    x = [[0.1, 0.2, 0.3, 0.4]]
    response = server.post(data=json.dumps(x))
    assert response.status_code == 200, response.text
    np.testing.assert_allclose(response.json()["prediction"], neo_models.classifier_reference(np.asarray(x)),
                               atol=1e-6)
    assert "Neo mode toolkit" in server.logs()


def test_neo_byom_and_toolkit_hooks_together_is_a_startup_error(built, tmp_path, serve):
    script = BYOM_SCRIPT + "\n\ndef model_fn(model_dir):\n    return None\n"
    logs = failed_start(serve, model_dir(built, tmp_path, "classifier", {"code/inference.py": script}))
    assert "defines both BYOM functions (neo_preprocess, neo_postprocess) and toolkit hooks (model_fn)" in logs


def test_neo_generic_app_refuses_several_outputs_as_csv_and_unknown_types(built, tmp_path, serve):
    server = serve(model_dir(built, tmp_path, "classifier"))
    assert server.post(data="[[1, 2, 3, 4]]", content_type="application/x-unknown").status_code == 415
    wrong = server.post(data="[[1, 2, 3]]")
    assert wrong.status_code == 400 and "Mismatch found in input data size" in wrong.json()["message"], wrong.text
    assert server.post(data="[[1, 2, 3, 4]]", accept="text/csv").status_code == 200


def test_neo_generic_app_runs_several_rows_on_a_model_compiled_for_one(built, tmp_path, serve):
    """Neo compiles for one batch size and DLR checks only element counts: N rows become N runs, stacked."""
    server = serve(model_dir(built, tmp_path, "classifier"))
    rows = [[1.0, 2.0, 3.0, 4.0], [0.5, 0.0, -1.0, 1.0], [0.0, 0.0, 0.0, 0.0]]
    response = server.post(data=json.dumps(rows))
    assert response.status_code == 200, response.text
    np.testing.assert_allclose(response.json(), neo_models.classifier_reference(np.asarray(rows)), atol=1e-6)
    csv = server.post(data="1,2,3,4\n0.5,0,-1,1", content_type=CSV, accept=CSV)
    assert csv.status_code == 200 and len(csv.text.strip().split("\n")) == 2, csv.text


def test_neo_generic_app_takes_a_json_object_of_input_names(built, tmp_path, serve):
    server = serve(model_dir(built, tmp_path, "classifier"))
    x = [[1.0, 2.0, 3.0, 4.0]]
    response = server.post(data=json.dumps({"data": x}))
    assert response.status_code == 200, response.text
    np.testing.assert_allclose(response.json(), neo_models.classifier_reference(np.asarray(x)), atol=1e-6)
    wrong = server.post(data=json.dumps({"nope": x}))
    assert wrong.status_code == 400 and "nope is not a valid input name" in wrong.json()["message"], wrong.text
