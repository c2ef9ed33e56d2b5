#!/usr/bin/env python3
"""The speed cells of `make bench` (issue 13): dynamic batching, large payloads and cold start.

Same method as bench/run.py (imported and reused: servers on 127.0.0.1 free ports, readiness plus one checked
answer, wrk -t1 closed loop after a warm-up, every process of a server's session gone after it stops):
  batching   TorchScript MLP 512-2048-2048-10 (one-row predict about 1.5 ms here), default handlers, one JSON row
             per request, 32 connections: smserve with SMSERVE_BATCH_SIZE unset and set, and the peer
  payload    TorchScript identity model, default handlers: 1 MB and 6 MB float32 NPY bodies (application/x-npy in
             and out) and a 1 MB JSON body, 4 connections; smserve and the peer. Peak RSS: the largest VmHWM of a
             server process after the cell (the peer's Java frontend included)
  coldstart  scripts/coldstart.py for the PyTorch and MXNet cpu images, 5 alternating runs each with the zygote
             and with SMSERVE_PRELOAD_FRAMEWORK=false; skipped when Docker or the image is missing
Environment: BENCH_DURATION (10), BENCH_WARMUP (2), BENCH_SERVERS (smserve,peer), BENCH_SPEED_CELLS
(batching,payload,coldstart), BENCH_WORKERS (workers per server, default 2), BENCH_BATCH_SIZE (16),
BENCH_BATCH_DELAY_MS (5), BENCH_COLDSTART_RUNS (5), BENCH_NO_SETUP=1.
Results: bench/results/<UTC stamp>-speed.json and a markdown table on stdout.
"""
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as bench  # noqa: E402
from proc import envlist, free_port, log, session_pids  # noqa: E402

ROOT = bench.ROOT
BUILDER = os.path.join(bench.BENCH, "make_speed_models.py")
CONNECTIONS = {"batching": 32, "payload": 4}


def peak_rss_mb(pids):
    """The largest high-water mark (VmHWM) of the server's processes."""
    peak = 0
    for pid in pids:
        try:
            with open("/proc/%d/status" % pid) as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]))
        except OSError:
            pass
    return round(peak / 1024, 1)


def check_echo(url, path, content_type):
    """One request: the echo model answers the very bytes' array (NPY) or the same numbers (JSON)."""
    body = open(path, "rb").read()
    req = urllib.request.Request(url + "/invocations", data=body, method="POST",
                                 headers={"Content-Type": content_type, "Accept": content_type})
    with urllib.request.urlopen(req, timeout=60) as r:
        answer = r.read()
    if content_type == "application/x-npy":
        import numpy as np
        import io
        same = np.array_equal(np.load(io.BytesIO(answer)), np.load(io.BytesIO(body)))
    else:
        same = bench.close(json.loads(answer), json.loads(body))
    if not same:
        raise RuntimeError("the echo answer differs from the request (%d bytes in, %d out)" % (len(body), len(answer)))


def cell(name, server, model_dir, workers, connections, duration, warmup, tmp, extra_env=None, body="",
         expected=None, body_file=None, content_type="application/json"):
    port = free_port()
    run_dir = os.path.join(tmp, "runs", "%s-%s-%d" % (name, server, port))
    log("[%s] %s %s workers=%d connections=%d %s" % (time.strftime("%H:%M:%S"), name, server, workers, connections,
                                                     " ".join("%s=%s" % kv for kv in (extra_env or {}).items())))
    s = bench.Server(server, "mlp", model_dir, workers, port, run_dir, extra_env=extra_env)
    try:
        s.wait_ready(body or "[[1.0, 2.0]]", expected if expected is not None else [[1.0, 2.0]])
        if body_file:
            check_echo(s.url(""), body_file, content_type)
        if warmup:
            bench.wrk(s.url(""), connections, warmup, body, body_file=body_file, content_type=content_type)
        load = bench.summarize(bench.wrk(s.url(""), connections, duration, body, timeout_s=30, body_file=body_file,
                                         content_type=content_type))
        load["peak_rss_mb"] = peak_rss_mb(session_pids(s.sid))
        batch = _batch_rows(s.url("/metrics")) if extra_env and extra_env.get("SMSERVE_BATCH_SIZE") else None
    finally:
        stop = s.stop()
    if stop["leftover_pids"]:
        log("    left processes behind: %s" % stop["leftover_pids"])
    load["rows_per_call"] = batch
    log("    %.0f req/s  p50 %.2f ms  p99 %.2f ms  errors %d  peak RSS %.0f MB%s" % (
        load["rps"], load["p50_ms"], load["p99_ms"], load["errors"], load["peak_rss_mb"],
        "  rows per predict call %.1f" % batch if batch else ""))
    return {"cell": name, "server": server, "workers": workers, "connections": connections,
            "env": extra_env or {}, "load": load}


def _batch_rows(url):
    try:
        text = urllib.request.urlopen(url, timeout=10).read().decode()
    except OSError:
        return None
    values = {}
    for line in text.splitlines():
        for metric in ("smserve_batch_rows_sum", "smserve_batch_rows_count"):
            if line.startswith(metric):
                values[metric] = values.get(metric, 0) + float(line.split()[-1])
    count = values.get("smserve_batch_rows_count")
    return round(values["smserve_batch_rows_sum"] / count, 2) if count else None


def coldstart(runs, tmp):
    rows = []
    if shutil.which("docker") is None or subprocess.run(["docker", "info"], capture_output=True).returncode:
        log("coldstart: no Docker engine answers (make engine); skipped")
        return rows
    for family in ("pytorch", "mxnet"):
        python = os.path.join(ROOT, ".venv", family, "bin", "python")
        tag = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "build_image.py"), "--family", family,
                              "--variant", "cpu", "--print-tag"], capture_output=True, text=True).stdout.strip()
        if not os.path.exists(python) or subprocess.run(["docker", "image", "inspect", tag],
                                                        capture_output=True).returncode:
            log("coldstart %s: .venv/%s or image %s missing (make venv-%s image FAMILY=%s VARIANT=cpu); skipped"
                % (family, family, tag, family, family))
            continue
        out = os.path.join(tmp, "cold-%s.json" % family)
        log("[%s] coldstart %s: %d alternating runs" % (time.strftime("%H:%M:%S"), family, runs))
        subprocess.run([python, os.path.join(ROOT, "scripts", "coldstart.py"), "--family", family, "--runs",
                        str(runs), "--versus", "SMSERVE_PRELOAD_FRAMEWORK=false", "--json", out], check=True)
        measured = json.load(open(out))
        for label, times in measured["runs"].items():
            rows.append({"family": family, "image": measured["image"],
                         "config": "zygote (default)" if label == "as given" else "SMSERVE_PRELOAD_FRAMEWORK=false",
                         "times_s": times, "median_s": sorted(times)[len(times) // 2]})
    return rows


def report(results, cold):
    lines = ["| cell | server | config | req/s | p50 ms | p99 ms | peak RSS MB | ratio |", "|---|---|---|---|---|---|---|---|"]
    base = {}
    for r in results:
        if r["server"] == "peer":
            base[r["cell"]] = r["load"]["rps"]
    for r in results:
        load = r["load"]
        config = " ".join("%s=%s" % kv for kv in r["env"].items()) or "defaults"
        if load.get("rows_per_call"):
            config += " (%.1f rows/call)" % load["rows_per_call"]
        ratio = ""
        if r["cell"] in base and r["server"] != "peer" and base[r["cell"]]:
            ratio = "%.2f× peer" % (load["rps"] / base[r["cell"]])
        lines.append("| %s | %s | %s | %.0f | %.2f | %.2f | %.0f | %s |" % (
            r["cell"], r["server"], config, load["rps"], load["p50_ms"], load["p99_ms"], load["peak_rss_mb"], ratio))
    unbatched = next((r["load"]["rps"] for r in results if r["cell"] == "batching" and r["server"] == "smserve"
                      and not r["env"]), None)
    batched = next((r["load"]["rps"] for r in results if r["cell"] == "batching" and r["env"]), None)
    if unbatched and batched:
        lines.append("\nbatching: %.2f× the unbatched req/s (target ≥ 3×)" % (batched / unbatched))
    if cold:
        lines += ["", "| cold start | config | median s | runs |", "|---|---|---|---|"]
        for c in cold:
            lines.append("| %s | %s | %.2f | %s |" % (c["family"], c["config"], c["median_s"],
                                                     ", ".join("%.2f" % t for t in c["times_s"])))
    return "\n".join(lines)


def main():
    duration = int(os.environ.get("BENCH_DURATION", "10"))
    warmup = int(os.environ.get("BENCH_WARMUP", "2"))
    servers = envlist("BENCH_SERVERS", "smserve,peer")
    cells = envlist("BENCH_SPEED_CELLS", "batching,payload,coldstart")
    workers = int(os.environ.get("BENCH_WORKERS", "2").split(",")[0])
    batch_env = {"SMSERVE_BATCH_SIZE": os.environ.get("BENCH_BATCH_SIZE", "16"),
                 "SMSERVE_BATCH_DELAY_MS": os.environ.get("BENCH_BATCH_DELAY_MS", "5")}
    bench.ensure_setup(servers)
    tmp = tempfile.mkdtemp(prefix="smserve-bench-speed-")
    started = datetime.datetime.now(datetime.timezone.utc)
    results, failures = [], []
    try:
        made = json.loads(bench.run_cmd([bench.python_of("smserve"), BUILDER, tmp]).strip().splitlines()[-1])
        plan = []
        if "batching" in cells:
            for server, env in [("smserve", None), ("smserve", batch_env), ("peer", None)]:
                plan.append(("batching", server, made["mlp_big"], dict(body=made["mlp_big_body"],
                                                                      expected=made["mlp_big_expected"]), env))
        if "payload" in cells:
            for name, path, content_type in [("npy 1 MB", made["npy_1mb"], "application/x-npy"),
                                             ("npy 6 MB", made["npy_6mb"], "application/x-npy"),
                                             ("json 1 MB", made["json_1mb"], "application/json")]:
                for server in ("smserve", "peer"):
                    plan.append((name, server, made["echo"], dict(body_file=path, content_type=content_type), None))
        for name, server, model_dir, request, env in plan:
            if server not in servers:
                continue
            connections = CONNECTIONS["batching" if name == "batching" else "payload"]
            try:
                results.append(cell(name, server, model_dir, workers, connections, duration, warmup, tmp,
                                    extra_env=env, **request))
            except Exception as exc:  # noqa: BLE001 - record the cell, go on
                failures.append({"cell": name, "server": server, "error": str(exc)})
                log("    FAILED: %s" % exc)
        cold = coldstart(int(os.environ.get("BENCH_COLDSTART_RUNS", "5")), tmp) if "coldstart" in cells else []
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    table = report(results, cold)
    print("\nsmserve speed cells %s, wrk -t1, %ds after %ds warm-up, %d workers per server\npeer = %s\n" % (
        started.strftime("%Y-%m-%d %H:%M UTC"), duration, warmup, workers, bench.PEER_DESCRIPTION))
    print(table)
    for f in failures:
        print("FAILED cell %s (%s): %s" % (f["cell"], f["server"], f["error"][:300]))
    out_dir = os.path.join(bench.BENCH, "results")
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, started.strftime("%Y-%m-%dT%H%M%SZ") + "-speed.json")
    with open(path, "w") as f:
        json.dump({"started": started.isoformat(), "duration_s": duration, "warmup_s": warmup, "workers": workers,
                   "environment": bench.versions(), "results": results, "coldstart": cold, "failures": failures,
                   "table_markdown": table}, f, indent=1)
    print("\nresults: %s" % os.path.relpath(path, ROOT))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
