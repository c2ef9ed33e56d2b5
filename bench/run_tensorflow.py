#!/usr/bin/env python3
"""TensorFlow family benchmark (`make bench-tensorflow`): what the front and the built-in backend add to a
SavedModel call, measured against that call made directly in the same run.

Models (built into a temporary directory by bench/tf_model.py with .venv/tensorflow; no weights in git):
half_plus_three (the test suite's SavedModel, input x [None]) and dense (tf.Module MLP 64-256-256-10 float32),
one row per request as {"instances": [...]}. Sections, each a markdown table:
  floor     the newest version's serving_default signature called in a Python loop (p50/p99 over N calls after
            warm-up): the physical floor the servers are compared with
  default   (a) no code/ dir: default JSON conversion, forwarded over the local channel
  handler   (b) code/inference.py with a passthrough input_handler and an output_handler returning the backend's
            body (bench/models/tf_passthrough): the handler path, which reaches the backend over HTTP
  http      (c) the default path with SMSERVE_TF_LOCAL_CHANNEL=false (HTTP hop to the backend), beside (a)
  batching  (d) dense, 32 single-row clients, SAGEMAKER_TFS_ENABLE_BATCHING=true (max batch 32, 1000 us) vs off
Cells are models x workers (1, 2) x connections (1, 8); one server per (section, model, workers), its connection
counts measured back to back after a warm-up each. Overhead = end-to-end p50 - direct-call p50, at 1 connection.
A cell fails when wrk reports any error (connect/read/write/timeout/HTTP >= 400) or the server's own counter
(smserve_requests_total on /metrics) shows any non-2xx answer to /invocations during the cell.

Same method and helpers as bench/run.py (imported): smserve on 127.0.0.1 (front port and the backends'
SAGEMAKER_SAFE_PORT_RANGE from a checked-free block), ready after /ping and one checked answer, wrk -t1 closed
loop, every process of the server's session gone after it stops. The driver needs only the standard library.
Usage: python3 bench/run_tensorflow.py [--duration S] [--quick] [--json PATH] [--sections default,handler,...]
Exit status 1 when a cell failed (with --strict also when a target is missed).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shlex
import shutil
import signal
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as bench  # noqa: E402
from proc import free_port_block, log, session_pids  # noqa: E402

ROOT = bench.ROOT
bench.SMSERVE_VENV = os.path.join(ROOT, ".venv", "tensorflow")
TF_PYTHON = os.path.join(bench.SMSERVE_VENV, "bin", "python")
HELPER = os.path.join(bench.BENCH, "tf_model.py")
HANDLER_CODE = os.path.join(bench.BENCH, "models", "tf_passthrough", "code")

MODELS = ("half_plus_three", "dense")
SECTIONS = ("default", "handler", "http", "batching")
HTTP_HOP = {"SMSERVE_TF_LOCAL_CHANNEL": "false"}
BATCHING = {"SAGEMAKER_TFS_ENABLE_BATCHING": "true", "SAGEMAKER_TFS_MAX_BATCH_SIZE": "32",
            "SAGEMAKER_TFS_BATCH_TIMEOUT_MICROS": "1000"}
BATCH_CONNECTIONS = 32
DIRECT_CALLS = 2000
TARGET_OVERHEAD_MS = {"default": 0.5, "handler": 1.5}  # end-to-end p50 - direct p50 at 1 connection
TARGET_BATCHING_RATIO = 2.0
# Backends take low..low+3 of the block (2 ports each, SAGEMAKER_SAFE_PORT_RANGE needs low + 2 <= high); the
# front listens on the last port, outside that range.
PORT_BLOCK = 5


def plan(sections: list[str], quick: bool) -> list[dict]:
    """One entry per server start. --quick: 1 worker, and the HTTP-hop section at 1 connection only."""
    workers = [1] if quick else [1, 2]
    runs = []
    for section, env in (("default", {}), ("handler", {}), ("http", HTTP_HOP)):
        if section in sections:
            connections = [1] if quick and section == "http" else [1, 8]
            runs += [{"section": section, "model": m, "workers": w, "connections": connections, "env": env,
                      "batching": False} for m in MODELS for w in workers]
    if "batching" in sections:
        runs += [{"section": "batching", "model": "dense", "workers": max(workers), "connections": [BATCH_CONNECTIONS],
                  "env": BATCHING if on else {}, "batching": on} for on in (False, True)]
    return runs


# ---------------------------------------------------------------- setup and models

def ensure_setup() -> None:
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: scripts/bench-peer-setup.sh --wrk-only (or make bench-tensorflow)")
    if not os.path.exists(os.path.join(bench.SMSERVE_VENV, "bin", "smserve")):
        sys.exit(".venv/tensorflow missing: make venv-tensorflow (or make bench-tensorflow)")


def helper(*args: str) -> dict:
    return json.loads(bench.run_cmd([TF_PYTHON, HELPER, *args]).strip().splitlines()[-1])


def model_dirs(built: dict, tmp: str) -> dict:
    """<tmp>/models/<model>-<default|handler>/<model>/<version>/, the handler one with code/inference.py."""
    dirs = {}
    for name, model in built.items():
        for kind in ("default", "handler"):
            root = os.path.join(tmp, "models", "%s-%s" % (name, kind))
            shutil.copytree(model["base"], os.path.join(root, name))
            if kind == "handler":
                shutil.copytree(HANDLER_CODE, os.path.join(root, "code"))
            dirs[(name, kind)] = root
    return dirs


# ---------------------------------------------------------------- cells

_REQUESTS = re.compile(r'^smserve_requests_total\{([^}]*)\}\s+(\S+)', re.M)


def answered(srv) -> dict[str, float]:
    """Answers to POST /invocations by status, from the server's own counters (all workers)."""
    with urllib.request.urlopen(srv.url("/metrics"), timeout=10) as r:
        text = r.read().decode()
    counts: dict[str, float] = {}
    for labels, value in _REQUESTS.findall(text):
        fields = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        if fields.get("route") == "/invocations":
            counts[fields["status"]] = counts.get(fields["status"], 0) + float(value)
    return counts


def measure(srv, connections: int, body: str, duration: int, warmup: int) -> dict:
    if warmup:
        bench.wrk(srv.url(""), connections, warmup, body)
    before = answered(srv)
    watch = bench.CpuWatch(session_pids(srv.sid))
    load = bench.summarize(bench.wrk(srv.url(""), connections, duration, body))
    load["cpu"] = watch.stop()
    time.sleep(0.3)  # the workers flush their counters within 0.05 s (smserve/metrics.py)
    after = answered(srv)
    delta = {status: after[status] - before.get(status, 0) for status in after}
    load["non_2xx"] = int(sum(n for status, n in delta.items() if not status.startswith("2")))
    load["answers_by_status"] = {status: int(n) for status, n in delta.items() if n}
    return load


def run_server(run: dict, built: dict, dirs: dict, duration: int, warmup: int, tmp: str, started) -> list[dict]:
    """Start one server, measure its connection counts, stop it; a failure fails every cell not yet measured."""
    model = built[run["model"]]
    low = free_port_block(PORT_BLOCK)
    env = {"SMSERVE_FAMILY": "tensorflow", "SAGEMAKER_SAFE_PORT_RANGE": "%d-%d" % (low, low + PORT_BLOCK - 2),
           **run["env"]}
    name = "%s-%s-w%d%s" % (run["section"], run["model"], run["workers"], "-batching" if run["batching"] else "")
    kind = "handler" if run["section"] == "handler" else "default"
    log("[%s] %s workers=%d connections=%s %s" % (time.strftime("%H:%M:%S"), name, run["workers"],
                                                  ",".join(map(str, run["connections"])),
                                                  " ".join("%s=%s" % kv for kv in run["env"].items())))
    srv = bench.Server("smserve", run["model"], dirs[(run["model"], kind)], run["workers"], low + PORT_BLOCK - 1,
                       os.path.join(tmp, "runs", name), extra_env=env)
    cells, error = [], None
    try:
        srv.wait_ready(model["body"], model["expected"])
        if run["batching"]:  # the backend got the batching file: a misspelt variable would measure "off" twice
            want = "max_batch_size { value: %s }" % BATCHING["SAGEMAKER_TFS_MAX_BATCH_SIZE"]
            with open(srv.log_path, errors="replace") as f:
                if want not in f.read():
                    raise RuntimeError("batching asked for, but %r is not in the server log" % want)
        for connections in run["connections"]:
            load = measure(srv, connections, model["body"], duration, warmup)
            cells.append(cell(run, connections, load))
            log("    c=%d: %.0f req/s  p50 %.3f ms  p99 %.3f ms  errors %d  non-2xx %d  other CPU %.0f%%" % (
                connections, load["rps"], load["p50_ms"], load["p99_ms"], load["errors"], load["non_2xx"],
                load["cpu"]["other_cpu_pct"]))
    except Exception as exc:  # noqa: BLE001 - record the cells, go on with the next server
        error = "%s: %s" % (type(exc).__name__, exc)
        log("    FAILED: %s" % error)
    if error or any(not c["ok"] for c in cells):
        bench.keep_log(srv, started, "failed")
    stop = srv.stop()
    if stop["leftover_pids"]:
        log("    processes left after SIGTERM (killed): %s" % stop["leftover_pids"])
    measured = {c["connections"] for c in cells}
    cells += [cell(run, connections, None, error) for connections in run["connections"] if connections not in measured]
    for c in cells:
        c["stop"] = stop
    return cells


def cell(run: dict, connections: int, load: dict | None, error: str | None = None) -> dict:
    ok = load is not None and not load["errors"] and not load["non_2xx"]
    if load is not None and not ok:
        error = "wrk errors %s, non-2xx answers %s" % (json.dumps(load["error_detail"]),
                                                       json.dumps(load["answers_by_status"]))
    return {"section": run["section"], "model": run["model"], "workers": run["workers"], "connections": connections,
            "env": run["env"], "batching": run["batching"], "load": load, "ok": ok, "error": error,
            "overhead_p50_ms": None}


# ---------------------------------------------------------------- report

def fmt(value, digits: int = 3) -> str:
    return "-" if value is None else "%.*f" % (digits, value)


def verdict(ok) -> str:
    return {True: "PASS", False: "MISS", None: "n/a"}[ok]


def load_columns(c: dict | None) -> list[str]:
    if c is None or c["load"] is None:
        return ["-"] * 6
    load = c["load"]
    return [fmt(load["rps"], 0), fmt(load["p50_ms"]), fmt(load["p99_ms"]), str(load["errors"]), str(load["non_2xx"]),
            fmt(load["cpu"]["other_cpu_pct"], 0)]


def status(c: dict | None) -> str:
    return "-" if c is None else ("ok" if c["ok"] else "FAIL")


def markdown(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def report(floor: dict, cells: list[dict], checks: list[dict]) -> str:
    lines = ["### Direct call (physical floor): signatures[\"serving_default\"](x=tf.constant(row)) in a loop", ""]
    lines += markdown(["model", "calls", "p50 ms", "p99 ms"],
                      [[m, str(f["n"]), fmt(f["p50_us"] / 1000), fmt(f["p99_us"] / 1000)] for m, f in floor.items()])
    load_header = ["req/s", "p50 ms", "p99 ms", "wrk errors", "non-2xx", "other CPU %"]
    for section, title in (("default", "(a) Default conversion (no code/), local channel"),
                           ("handler", "(b) input_handler/output_handler (passthrough); the front posts to the backend over the local channel")):
        rows = [[c["model"], str(c["workers"]), str(c["connections"]), *load_columns(c), fmt(c["overhead_p50_ms"]),
                 "" if c["connections"] != 1 else "≤ %.2f %s" % (TARGET_OVERHEAD_MS[section],
                                                                 verdict(target_ok(c, section))), status(c)]
                for c in cells if c["section"] == section]
        if rows:
            lines += ["", "### " + title, ""]
            lines += markdown(["model", "workers", "conns", *load_header, "overhead p50 ms", "target", "cell"], rows)
    local = {(c["model"], c["workers"], c["connections"]): c for c in cells if c["section"] == "default"}
    rows = []
    for c in (c for c in cells if c["section"] == "http"):
        a = local.get((c["model"], c["workers"], c["connections"]))
        p50 = [x["load"]["p50_ms"] if x and x["load"] else None for x in (a, c)]
        rps = [x["load"]["rps"] if x and x["load"] else None for x in (a, c)]
        hop = None if None in p50 else p50[1] - p50[0]
        rows.append([c["model"], str(c["workers"]), str(c["connections"]), fmt(rps[0], 0), fmt(rps[1], 0),
                     fmt(p50[0]), fmt(p50[1]), fmt(hop), fmt(c["overhead_p50_ms"]), status(a), status(c)])
    if rows:
        lines += ["", "### (c) Default conversion: local channel vs SMSERVE_TF_LOCAL_CHANNEL=false (HTTP hop)", ""]
        lines += markdown(["model", "workers", "conns", "local req/s", "http req/s", "local p50 ms", "http p50 ms",
                           "http - local p50 ms", "http overhead p50 ms", "local cell", "http cell"], rows)
    rows = [[c["model"], str(c["workers"]), str(c["connections"]), "on" if c["batching"] else "off", *load_columns(c),
             status(c)] for c in cells if c["section"] == "batching"]
    if rows:
        lines += ["", "### (d) Batching: %d single-row clients, SAGEMAKER_TFS_ENABLE_BATCHING=true (max batch %s, "
                  "timeout %s us) vs off" % (BATCH_CONNECTIONS, BATCHING["SAGEMAKER_TFS_MAX_BATCH_SIZE"],
                                             BATCHING["SAGEMAKER_TFS_BATCH_TIMEOUT_MICROS"]), ""]
        lines += markdown(["model", "workers", "conns", "batching", *load_header, "cell"], rows)
        ratio = next((k["detail"] for k in checks if k["name"].startswith("batching")), None)
        lines += ["", "batching on / off req/s: %s" % ratio]
    lines += ["", "### Targets", ""]
    lines += ["- [%s] %s: %s" % (verdict(k["ok"]), k["name"], k["detail"]) for k in checks]
    failed = [c for c in cells if not c["ok"]]
    if failed:
        lines += ["", "### Failed cells", ""]
        lines += ["- %s %s w=%d c=%d%s: %s" % (c["section"], c["model"], c["workers"], c["connections"],
                                               " batching" if c["batching"] else "", c["error"]) for c in failed]
    noisy = [c for c in cells if c["load"] and c["load"]["cpu"]["other_cpu_pct"] > 10]
    if noisy:
        lines += ["", "WARNING: %d cells ran while other processes used > 10%% CPU (column 'other CPU %%'); rerun on "
                      "an idle machine before quoting them." % len(noisy)]
    return "\n".join(lines)


def target_ok(c: dict, section: str):
    return None if c["overhead_p50_ms"] is None else c["overhead_p50_ms"] <= TARGET_OVERHEAD_MS[section]


def evaluate(floor: dict, cells: list[dict]) -> list[dict]:
    """Fill in the overheads and check the targets."""
    for c in cells:
        if c["connections"] == 1 and c["load"] and c["model"] in floor:
            c["overhead_p50_ms"] = round(c["load"]["p50_ms"] - floor[c["model"]]["p50_us"] / 1000, 3)
    checks = []
    for section, what in (("default", "default path"), ("handler", "handler path")):
        for c in cells:
            if c["section"] == section and c["connections"] == 1:
                checks.append({"name": "%s overhead p50 ≤ %.2f ms, %s w=%d c=1" % (
                    what, TARGET_OVERHEAD_MS[section], c["model"], c["workers"]), "ok": target_ok(c, section),
                    "detail": "%s ms" % fmt(c["overhead_p50_ms"])})
    rps = {c["batching"]: c["load"]["rps"] for c in cells if c["section"] == "batching" and c["ok"]}
    if any(c["section"] == "batching" for c in cells):
        ratio = rps[True] / rps[False] if rps.get(True) and rps.get(False) else None
        checks.append({"name": "batching req/s ≥ %.1f× unbatched (dense, c=%d)" % (TARGET_BATCHING_RATIO,
                                                                                   BATCH_CONNECTIONS),
                       "ok": None if ratio is None else ratio >= TARGET_BATCHING_RATIO,
                       "detail": "%s× (%s vs %s req/s)" % (fmt(ratio, 2), fmt(rps.get(True), 0),
                                                           fmt(rps.get(False), 0))})
    return checks


def commit() -> str:
    short = bench.run_cmd(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT).strip()
    dirty = bench.run_cmd(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT).strip()
    return short + (" (with uncommitted changes)" if dirty else "")


# ---------------------------------------------------------------- main

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=int, default=int(os.environ.get("BENCH_DURATION", "10")),
                    help="seconds of measurement per cell (default 10, or BENCH_DURATION)")
    ap.add_argument("--warmup", type=int, default=None, help="seconds of wrk warm-up per cell (default 2; 1 quick)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 s cells, 1 worker, fewer cells")
    ap.add_argument("--sections", default=",".join(SECTIONS), help="comma list of %s" % ", ".join(SECTIONS))
    ap.add_argument("--json", help="write every number here (default bench/results/<UTC stamp>-tensorflow.json)")
    ap.add_argument("--strict", action="store_true", help="exit 1 when a target is missed, too")
    args = ap.parse_args()
    duration = 2 if args.quick else args.duration
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        ap.error("unknown sections: %s" % ", ".join(sorted(unknown)))
    ensure_setup()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwinds through the finally blocks: servers stop
    started = datetime.datetime.now(datetime.timezone.utc)
    python = sys.executable
    command = shlex.join([os.path.relpath(python, ROOT) if python.startswith(ROOT + os.sep) else
                          os.path.basename(python), *sys.argv])
    tmp = tempfile.mkdtemp(prefix="smserve-bench-tf-")
    cells: list[dict] = []
    floor: dict = {}
    try:
        built = helper("build", os.path.join(tmp, "built"))
        dirs = model_dirs(built, tmp)
        for name in MODELS:  # before any server runs, so they do not compete with it
            floor[name] = helper("direct", built[name]["base"], built[name]["body"], str(DIRECT_CALLS))
            log("direct %s: p50 %.1f us  p99 %.1f us" % (name, floor[name]["p50_us"], floor[name]["p99_us"]))
        for run in plan(sections, args.quick):
            cells += run_server(run, built, dirs, duration, warmup, tmp, started)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    checks = evaluate(floor, cells)
    environment = bench.versions()
    tensorflow = next(iter(floor.values()), {}).get("tensorflow")
    head = ["## smserve TensorFlow family benchmark", "",
            "- date: %s" % started.strftime("%Y-%m-%d %H:%M UTC"),
            "- commit: %s" % commit(),
            "- command: `%s`" % command,
            "- machine: %s CPUs (%s), TensorFlow %s, %s" % (environment["cpus"], environment.get("cpu_model"),
                                                           tensorflow, environment["wrk"]),
            "- method: built-in backend, wrk -t1 closed loop on 127.0.0.1, %d s after %d s warm-up per cell; one "
            "server per (section, model, workers); overhead = e2e p50 - direct-call p50 at 1 connection%s" % (
                duration, warmup, "; --quick" if args.quick else ""), ""]
    table = report(floor, cells, checks)
    print("\n".join(head) + "\n" + table)
    path = args.json or os.path.join(bench.BENCH, "results", started.strftime("%Y-%m-%dT%H%M%SZ") + "-tensorflow.json")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump({"started": started.isoformat(), "commit": commit(), "command": command, "duration_s": duration,
                   "warmup_s": warmup, "quick": args.quick, "sections": sections, "environment": environment,
                   "models": {m: {"body": b["body"], "expected": b["expected"]} for m, b in built.items()},
                   "targets": {"overhead_p50_ms": TARGET_OVERHEAD_MS, "batching_ratio": TARGET_BATCHING_RATIO},
                   "batching_env": BATCHING, "floor": floor, "cells": cells, "checks": checks,
                   "table_markdown": table}, f, indent=1)
    path = os.path.abspath(path)
    print("\nresults: %s" % (os.path.relpath(path, ROOT) if path.startswith(ROOT + os.sep) else path))
    if any(not c["ok"] for c in cells):
        return 1
    return 1 if args.strict and any(k["ok"] is False for k in checks) else 0


if __name__ == "__main__":
    sys.exit(main())
