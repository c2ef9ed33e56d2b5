"""core.md §18 (logging) and §19 (metrics), §21 checklist items 114–119.

`obs_server` serves a real model with the family defaults (core_scripts.default_model: PyTorch, a
TorchScript MLP; MXNet, a Module checkpoint) on two workers;
`json_server` runs a user module that prints, with SMSERVE_LOG_FORMAT=json and SMSERVE_METRICS=false.
"""

from __future__ import annotations

import json
import re
import time

import pytest
import requests

from ..models import make_dir, write_code
from . import core_scripts

pytestmark = pytest.mark.once  # family-independent mechanics (pyproject markers)

TEXT_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO|WARNING|ERROR|CRITICAL) "
                       r"[\w-]+\[\d+\] \S")


def default_model(model_dir):
    return core_scripts.default_model(model_dir).payload


def parse_metrics(text: str) -> dict[str, dict[tuple, float]]:
    """{series name: {sorted (label, value) pairs: value}} from Prometheus text format 0.0.4."""
    out: dict[str, dict[tuple, float]] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = re.match(r"^([a-zA-Z_:][\w:]*)(\{(.*)\})? (\S+)$", line)
        assert match, f"not a sample line: {line!r}"
        labels = tuple(sorted(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(3) or "")))
        out.setdefault(match.group(1), {})[labels] = float(match.group(4))
    return out


# Workers publish their observations to the shared metric files in batches, at most 50 ms after a request
# (smserve.metrics.FLUSH_INTERVAL); a scrape shows every request answered before that.
PUBLISH_DELAY_S = 0.15


def scrape(server) -> dict[str, dict[tuple, float]]:
    """One scrape on a fresh connection (any worker may answer), after the publication delay."""
    time.sleep(PUBLISH_DELAY_S)
    response = requests.get(server.url + "/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    return parse_metrics(response.text)


def invocation_counts(metrics) -> dict[str, float]:
    """status -> smserve_requests_total for POST /invocations."""
    out = {}
    for labels, value in metrics.get("smserve_requests_total", {}).items():
        d = dict(labels)
        if d.get("route") == "/invocations" and d.get("method") == "POST":
            assert d.get("model") == "model"
            out[d["status"]] = value
    return out


def post(server, data, content_type="application/json", **headers):
    return requests.post(server.url + "/invocations", data=data, headers={"Content-Type": content_type, **headers},
                         timeout=30)


@pytest.fixture(scope="module")
def obs_server(module_servers, tmp_path_factory):
    model_dir = make_dir(tmp_path_factory.mktemp("obs"))
    payload = default_model(model_dir)
    server = module_servers(model_dir, {"SAGEMAKER_MODEL_SERVER_WORKERS": "2"})
    server.payload = json.dumps(payload)
    return server


def test_core_114_requests_total_status_labels(obs_server):
    """core §21 item 114 (§19): after mixed traffic smserve_requests_total counts each answer under its route,
    method, status and model labels."""
    before = scrape(obs_server)
    for _ in range(3):
        assert post(obs_server, obs_server.payload).status_code == 200
    for _ in range(2):
        assert post(obs_server, "[[1, 2").status_code == 400
    assert post(obs_server, obs_server.payload, Accept="image/png").status_code == 406
    assert requests.get(obs_server.url + "/nope", timeout=10).status_code == 404
    assert requests.get(obs_server.url + "/invocations", timeout=10).status_code == 405
    after = scrape(obs_server)
    old, new = invocation_counts(before), invocation_counts(after)
    delta = {status: new.get(status, 0) - old.get(status, 0) for status in new}
    assert {k: v for k, v in delta.items() if v} == {"200": 3, "400": 2, "406": 1}, delta

    def count(metrics, **want):
        return sum(v for labels, v in metrics.get("smserve_requests_total", {}).items()
                   if all(dict(labels).get(k) == w for k, w in want.items()))

    assert count(after, status="404", method="GET") - count(before, status="404", method="GET") == 1
    assert count(after, status="405", method="GET") - count(before, status="405", method="GET") == 1
    assert "# TYPE smserve_requests_total counter" in requests.get(obs_server.url + "/metrics", timeout=10).text


def test_core_115_metrics_same_whichever_worker_answers(obs_server):
    """core §21 item 115 (§19): totals are container-wide: scrapes answered by each of the two workers (seen
    in the access log) report the same /invocations counts."""
    for _ in range(4):
        assert post(obs_server, obs_server.payload).status_code == 200
    time.sleep(PUBLISH_DELAY_S)
    results = []
    for _ in range(40):
        response = requests.get(obs_server.url + "/metrics", timeout=10,
                                headers={"X-Request-Id": f"scrape-115-{len(results)}"})
        results.append(invocation_counts(parse_metrics(response.text)))
        time.sleep(0.02)
    time.sleep(0.6)  # the access log is flushed every 0.2 s
    workers = set(re.findall(r" access\[(\d+)\] GET /metrics 200 .* request_id=scrape-115-", obs_server.logs()))
    assert len(workers) == 2, "the scrapes did not reach both workers"
    assert all(r == results[0] for r in results), results
    assert results[0].get("200", 0) >= 4


def test_core_116_stage_histograms_for_default_hooks(obs_server):
    """core §21 item 116 (§19): with default hooks /metrics has smserve_stage_duration_seconds histograms for
    the decode, predict and encode stages, with the buckets of §19."""
    assert post(obs_server, obs_server.payload).status_code == 200
    metrics = scrape(obs_server)
    counts = metrics["smserve_stage_duration_seconds_count"]
    for stage in ("decode", "predict", "encode"):
        assert counts[(("model", "model"), ("stage", stage))] >= 1, counts
    assert (("model", "model"), ("stage", "transform")) not in counts
    buckets = {dict(labels)["le"] for labels in metrics["smserve_stage_duration_seconds_bucket"]
               if dict(labels)["stage"] == "predict"}
    expected = {"0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0",
                "2.5", "5.0", "10.0", "30.0", "60.0", "+Inf"}
    assert buckets == expected


@pytest.fixture(scope="module")
def json_server(module_servers, tmp_path_factory):
    model_dir = make_dir(tmp_path_factory.mktemp("jsonlogs"))
    write_code(model_dir, PRINTER)
    return module_servers(model_dir, {"SAGEMAKER_MODEL_SERVER_WORKERS": "1", "SMSERVE_LOG_FORMAT": "json",
                                      "SMSERVE_METRICS": "false"})


PRINTER = '''
import json


def model_fn(model_dir):
    print("user print from model_fn")
    return "printer"


def transform_fn(model, body, content_type, accept):
    print("user print from transform_fn")
    if body in ("boom", b"boom"):
        raise ValueError("boom on purpose")
    return json.dumps({"ok": True}), "application/json"
'''


def test_core_117_metrics_disabled_is_404(json_server):
    """core §21 item 117 (§12.2, §2.2): SMSERVE_METRICS=false → /metrics answers 404 JSON."""
    response = requests.get(json_server.url + "/metrics", timeout=10)
    assert response.status_code == 404
    assert response.json()["type"] == "RouteNotFound"


def test_core_118_text_by_default_json_when_asked(obs_server, json_server):
    """core §21 item 118 (§18): the default log format is text (`<UTC ms timestamp> <LEVEL>
    <component>[<pid>] <message>`); SMSERVE_LOG_FORMAT=json makes every line a JSON object with ts, level,
    logger, pid, worker and msg, user print() output included (logger "user"), tracebacks included."""
    assert post(obs_server, obs_server.payload).status_code == 200
    assert post(json_server, "{}").status_code == 200
    assert post(json_server, "boom", "text/plain", **{"X-Request-Id": "boom-118"}).status_code == 500
    time.sleep(0.6)

    text_lines = obs_server.logs().splitlines()
    records = [line for line in text_lines if TEXT_LINE.match(line)]
    assert len(records) >= 5
    assert any(" INFO supervisor[" in line and "starting" in line for line in records)
    assert any(re.search(r" INFO access\[\d+\] POST /invocations 200 ", line) for line in records)
    for line in text_lines:
        assert not line.startswith("{"), line

    lines = [line for line in json_server.logs().splitlines() if line.strip()]
    entries = []
    for line in lines:
        entry = json.loads(line)  # every line is valid JSON
        assert isinstance(entry, dict) and {"ts", "level", "logger", "pid", "worker", "msg"} <= set(entry), entry
        entries.append(entry)
    user = [e["msg"] for e in entries if e["logger"] == "user"]
    assert "user print from model_fn" in user and "user print from transform_fn" in user, user
    errors = [e for e in entries if e["level"] == "ERROR" and e.get("request_id") == "boom-118"]
    assert errors and "boom on purpose" in json.dumps(errors)
    assert any(e["logger"] == "access" and e.get("request_id") == "boom-118" and e.get("status") == 500
               and e.get("request_bytes") == len("boom") for e in entries)


def test_core_119_ping_not_in_access_log_by_default(obs_server):
    """core §21 item 119 (§2.3, §18): /ping lines are absent from the access log by default, while other
    requests are logged."""
    for _ in range(5):
        assert requests.get(obs_server.url + "/ping", timeout=10).status_code == 200
    assert post(obs_server, obs_server.payload, **{"X-Request-Id": "after-pings-119"}).status_code == 200
    time.sleep(0.6)
    logs = obs_server.logs()
    assert "request_id=after-pings-119" in logs
    assert "/ping" not in "\n".join(line for line in logs.splitlines() if " INFO access[" in line)
