"""core.md §6 and §21 item 45: CA_REPOSITORY_ARN makes code/requirements.txt install from a CodeArtifact
repository, and neither the token nor the index URL ever reaches the log.

The AWS side is played by a local HTTP server on 127.0.0.1 that speaks the two CodeArtifact API calls boto3
makes (GetAuthorizationToken, GetRepositoryEndpoint; botocore is pointed at it with the standard
AWS_ENDPOINT_URL_CODEARTIFACT variable) and serves a PEP 503 simple index that answers only requests carrying
the token as HTTP Basic credentials. The package it serves exists nowhere else, so the import in the user
module proves the install came from that index.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import secrets
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from ..models import make_dir, write_code

PACKAGE, VERSION, MODULE = "smserve-ca-probe", "1.0", "smserve_ca_probe"
DOMAIN, OWNER, REPOSITORY, REGION = "smserve-domain", "123456789012", "smserve-repo", "us-west-2"
ARN = f"arn:aws:codeartifact:{REGION}:{OWNER}:repository/{DOMAIN}/{REPOSITORY}"

USER = '''
import json

import smserve_ca_probe


def model_fn(model_dir):
    return smserve_ca_probe.VALUE


def transform_fn(model, body, content_type, accept):
    return json.dumps({"value": model, "file": smserve_ca_probe.__file__}), "application/json"
'''


def probe_wheel() -> tuple[str, bytes]:
    """A minimal pure-Python wheel (PEP 427) holding one module."""
    name = f"{MODULE}-{VERSION}-py3-none-any.whl"
    dist_info = f"{MODULE}-{VERSION}.dist-info"
    files = {
        f"{MODULE}.py": b'VALUE = "installed-from-codeartifact"\n',
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {PACKAGE}\nVersion: {VERSION}\n".encode(),
        f"{dist_info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: smserve-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{dist_info}/RECORD,,")
    files[f"{dist_info}/RECORD"] = ("\n".join(record) + "\n").encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
    return name, buffer.getvalue()


class FakeCodeArtifact:
    """The CodeArtifact API and the repository's package index, on two ports as on two hosts in AWS."""

    def __init__(self):
        self.token = "ca-token-" + secrets.token_hex(16)
        self.wheel_name, self.wheel = probe_wheel()
        self.calls: list[str] = []
        self.index_requests: list[tuple[str, bool]] = []
        self.api = _Listener(self)
        self.index = _Listener(self)

    def __enter__(self) -> "FakeCodeArtifact":
        for listener in (self.api, self.index):
            threading.Thread(target=listener.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        for listener in (self.api, self.index):
            listener.shutdown()
            listener.server_close()


class _Listener(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, fake: FakeCodeArtifact):
        super().__init__(("127.0.0.1", 0), CodeArtifactHandler)
        self.fake = fake

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class CodeArtifactHandler(BaseHTTPRequestHandler):
    server: _Listener

    def log_message(self, *args) -> None:
        pass

    def _send(self, status: int, body: bytes, content_type: str, **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, payload: dict) -> None:
        self._send(200, json.dumps(payload).encode(), "application/json")

    def do_POST(self) -> None:  # GetAuthorizationToken
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        signed = self.headers.get("Authorization", "").startswith("AWS4-HMAC-SHA256")
        if url.path == "/v1/authorization-token" and query.get("domain") == [DOMAIN] and signed \
                and query.get("domain-owner") == [OWNER]:
            self.server.fake.calls.append("GetAuthorizationToken")
            self._json({"authorizationToken": self.server.fake.token, "expiration": 4102444800})
        else:
            self._send(400, b'{"message": "unexpected request"}', "application/json")

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        if url.path == "/v1/repository/endpoint":  # GetRepositoryEndpoint
            if query.get("repository") == [REPOSITORY] and query.get("format") == ["pypi"]:
                self.server.fake.calls.append("GetRepositoryEndpoint")
                self._json({"repositoryEndpoint": f"{self.server.fake.index.url}/pypi/{REPOSITORY}/"})
            else:
                self._send(400, b'{"message": "unexpected request"}', "application/json")
            return
        expected = "Basic " + base64.b64encode(f"aws:{self.server.fake.token}".encode()).decode()
        authorised = self.headers.get("Authorization") == expected
        self.server.fake.index_requests.append((url.path, authorised))
        if not authorised:
            self._send(401, b"token required", "text/plain", **{"WWW-Authenticate": 'Basic realm="codeartifact"'})
            return
        project = f"/pypi/{REPOSITORY}/simple/{PACKAGE}/"
        if url.path == project:
            link = f'<a href="{self.server.fake.wheel_name}">{self.server.fake.wheel_name}</a>'
            self._send(200, f"<html><body>{link}</body></html>".encode(), "text/html")
        elif url.path == project + self.server.fake.wheel_name:
            self._send(200, self.server.fake.wheel, "application/octet-stream")
        else:
            self._send(404, b"not found", "text/plain")


@pytest.fixture
def codeartifact():
    with FakeCodeArtifact() as fake:
        yield fake


def test_core_45_codeartifact_index_used_and_token_never_logged(serve, tmp_path, codeartifact):
    """core §21 item 45 (§6): with CA_REPOSITORY_ARN the supervisor gets a CodeArtifact token with the
    container's credentials, installs code/requirements.txt from the repository endpoint as --index-url (the
    package exists only there), and neither the token nor the index URL appears in the log, even at debug
    level where pip's own output is logged."""
    model_dir = make_dir(tmp_path)
    write_code(model_dir, USER)
    write_code(model_dir, f"{PACKAGE}=={VERSION}\n", name="requirements.txt")
    env = {"SAGEMAKER_MODEL_SERVER_WORKERS": "1", "SMSERVE_SKIP_REQUIREMENTS": "", "SMSERVE_LOG_LEVEL": "debug",
           "CA_REPOSITORY_ARN": ARN, "AWS_ENDPOINT_URL_CODEARTIFACT": codeartifact.api.url, "AWS_REGION": REGION,
           "AWS_ACCESS_KEY_ID": "AKIDSMSERVETEST", "AWS_SECRET_ACCESS_KEY": "smserve-test-secret",
           "PIP_FIND_LINKS": "", "PIP_NO_INDEX": ""}
    server = serve(model_dir, env, timeout=240)
    response = server.post(data="{}")
    assert response.status_code == 200, response.text
    assert response.json()["value"] == "installed-from-codeartifact"
    assert codeartifact.calls == ["GetAuthorizationToken", "GetRepositoryEndpoint"]
    assert any(path.endswith(codeartifact.wheel_name) and ok for path, ok in codeartifact.index_requests)
    logs = server.logs()
    assert "installing" in logs and "--index-url" in logs, logs
    assert codeartifact.token not in logs
    assert f"127.0.0.1:{codeartifact.index.server_address[1]}" not in logs
    assert f"/pypi/{REPOSITORY}/" not in logs
