#!/usr/bin/env python3
"""Neo family benchmark (`make bench-neo`): smserve's Neo family against the AWS stack that Neo containers run
on, both serving the same DLR models in the same run, and both against DLRModel.run called directly.

Models (built into a temporary directory with the project's generators, neo/tests/neo_models.py, no weights in
git): a Treelite 0.93 ensemble (2 trees over 3 features; smserve picks its xgboost app) and a TVM graph model
with a 224x224x3 input and model-shapes.json (smserve picks its image_classification app). Requests:
  csv1     text/csv, 1 row of 3 values              -> xgboost app, one CSV line back
  csv100   text/csv, 100 rows of 3 values           -> xgboost app, one CSV line of 100 predictions back
  jpeg     image/jpeg, a 224x224 RGB JPEG (12.9 kB)  -> image app, a JSON list of 6 scores back
Servers, 2 workers each (SAGEMAKER_MODEL_SERVER_WORKERS, which the toolkit turns into MMS's
default_workers_per_model):
  smserve  `.venv/neo/bin/smserve serve --model-dir DIR` with SMSERVE_FAMILY=neo (host process)
  peer     sagemaker-inference 1.10.1 on multi-model-server 1.1.11 (.venv/peer-neo, bench/peer_neo/requirements.txt;
           dlr 1.6.0 with telemetry off), started by bench/peer_mms/serve.py with its toolkit handler service; the
           user module bench/peer_neo/neo_handler.py does the per-request work of AWS's xgboost-neo and
           image-classification-neo handlers (CSV -> float32 -> run -> savetxt; JPEG -> RGB resize -> CHW uint8 ->
           run -> JSON). OMP/TVM threads per worker = CPUs / workers, pinning off, as smserve sets them.
Floor, measured in this process before any server starts (same dlr, numpy and Pillow as smserve's workers),
p50/p99 over N calls after warm-up: DLRModel.run on the parsed matrix / decoded pixels; the direct floor (run for
the CSV requests; JPEG decode + RGB + resize + CHW + run for the image, the same pre-processing); the whole
handler work (also CSV parsing and savetxt / JSON). Overhead = end-to-end p50 at 1 connection - direct p50.

Method as bench/run.py and bench/run_tensorflow.py (their helpers are imported): one server at a time on a free
127.0.0.1 port, ready after one checked answer to every request kind, every listening socket checked to be on
127.0.0.1, wrk -t1 closed loop (1 and 8 connections, warm-up then measurement), every process of the server's
session gone after it stops. Per model the peer runs first, then smserve.
Usage: .venv/neo/bin/python bench/run_neo.py [--duration S] [--quick] [--json PATH] [--strict]
(BENCH_DURATION sets the default duration). Exit status 1 when a cell failed (with --strict also when a target
is missed).
"""
from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as bench  # noqa: E402
from proc import free_port, log, session_pids, time_calls  # noqa: E402
from run_tensorflow import commit, fmt, markdown, verdict  # noqa: E402  (sets bench.SMSERVE_VENV: reset below)

ROOT = bench.ROOT
bench.SMSERVE_VENV = os.path.join(ROOT, ".venv", "neo")
bench.PEER_VENV = os.path.join(ROOT, ".venv", "peer-neo")
PEER_DIR = os.path.join(bench.BENCH, "peer_neo")
NEO_MODELS = os.path.join(ROOT, "neo", "tests", "neo_models.py")

WORKERS = 2
CONNECTIONS = (1, 8)
THREADS = str(max(1, (os.cpu_count() or 1) // WORKERS))
SMSERVE_ENV = {"SMSERVE_FAMILY": "neo"}
PEER_ENV = {"SAGEMAKER_PROGRAM": "neo_handler.py", "PYTHONPATH": PEER_DIR, "OMP_NUM_THREADS": THREADS,
            "TVM_NUM_THREADS": THREADS, "TVM_BIND_THREADS": "0", "TREELITE_BIND_THREADS": "0"}
SERVERS = ("peer", "smserve")
TARGET_RPS_RATIO = 2.0  # smserve / peer at 8 connections, equal workers
TARGET_P99_RATIO = 0.5
CSV_ROWS = 100
FLOOR_CALLS = {"xgboost": 3000, "image": 500}
PEER_DESCRIPTION = ("sagemaker-inference 1.10.1 on multi-model-server 1.1.11, dlr 1.6.0 (.venv/peer-neo); handler "
                    "bench/peer_neo/neo_handler.py through bench/peer_mms's toolkit handler service")


# ---------------------------------------------------------------- setup and models

def ensure_setup() -> None:
    for tool in ("wrk", "java"):
        if shutil.which(tool) is None:
            sys.exit("%s not found: scripts/bench-peer-setup.sh installs it (or make bench-neo)" % tool)
    for venv, rule in ((bench.SMSERVE_VENV, ".venv/neo/.installed"), (bench.PEER_VENV, ".venv/peer-neo/.installed")):
        if not os.path.exists(os.path.join(venv, "bin", "python")):
            sys.exit("%s missing: make %s (or make bench-neo)" % (os.path.relpath(venv, ROOT), rule))
    check = [bench.python_of("peer"), "-c", "import sys; sys.path.insert(0, %r); import neo_handler; "
             "sys.exit(0 if neo_handler.telemetry_off() else 1)" % PEER_DIR]
    if subprocess.run(check).returncode != 0:  # before the peer's workers import dlr
        sys.exit(".venv/peer-neo: DLR telemetry is not off: run .venv/peer-neo/bin/python neo/venv-setup.py")


def load_module(name: str, path: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build(tmp: str, neo_models) -> tuple[dict, dict]:
    """The two model directories and the three requests, each with its expected answer (numpy oracles)."""
    import numpy as np
    from PIL import Image

    parent = Path(tmp, "models")
    parent.mkdir(parents=True)
    dirs = {"trees": str(neo_models.treelite_trees(parent)),
            "image": str(neo_models.tvm_image_model(parent, "image", channels=3, height=224, width=224))}
    rows = np.random.default_rng(0).uniform(0.0, 10.0, (CSV_ROWS, neo_models.TREE_FEATURES)).round(3)
    requests = {}
    for name, block in (("csv1", rows[:1]), ("csv100", rows)):
        text = "\n".join(",".join("%g" % v for v in row) for row in block) + "\n"
        expected = neo_models.treelite_reference(block.astype(np.float32)).ravel().tolist()
        requests[name] = {"app": "xgboost", "model": "trees", "content_type": "text/csv", "body": text.encode(),
                          "file": None, "expected": expected, "desc": "text/csv, %d row(s) of 3 values" % len(block)}
    y, x = np.mgrid[0:224, 0:224]
    pattern = np.stack([x * 255 // 223, y * 255 // 223, (x + y) * 7 % 256], axis=2).astype(np.uint8)
    path = os.path.join(tmp, "image.jpg")
    Image.fromarray(pattern).save(path, quality=90)
    decoded = np.asarray(Image.open(path).convert("RGB"), dtype=np.uint8).transpose(2, 0, 1)
    with open(path, "rb") as f:
        body = f.read()
    requests["jpeg"] = {"app": "image", "model": "image", "content_type": "image/jpeg", "body": body, "file": path,
                        "expected": neo_models.image_reference(decoded).ravel().tolist(),
                        "desc": "image/jpeg, 224x224 RGB, %d bytes" % len(body)}
    return dirs, requests


def parse_answer(req: dict, data: bytes):
    text = data.decode()
    return [float(v) for v in text.strip().split(",")] if req["app"] == "xgboost" else json.loads(text)


# ---------------------------------------------------------------- floor

def floors(dirs: dict, requests: dict, neo_models, quick: bool) -> dict:
    """DLRModel.run, the direct floor and the whole handler work, timed in this process (bench/proc.py)."""
    # The workers' thread settings (PEER_ENV; smserve sets the same): Treelite otherwise pins the calling thread to
    # CPU 0, and every server and wrk started from this process afterwards would inherit that one-CPU mask.
    # Set only while the floor runs: smserve is started with its own defaults.
    threads = {k: v for k, v in PEER_ENV.items() if k.endswith("_THREADS")}
    saved = {k: os.environ.get(k) for k in threads}
    os.environ.update(threads)
    cpus = os.sched_getaffinity(0)
    neo_models.disable_dlr_telemetry()  # before the first import of dlr in this process
    handler = load_module("neo_handler", os.path.join(PEER_DIR, "neo_handler.py"))
    models = {name: handler.model_fn(path) for name, path in dirs.items()}
    out = {}
    for name, req in requests.items():
        model, ct = models[req["model"]], req["content_type"]
        body = req["body"].decode() if req["app"] == "xgboost" else req["body"]
        data = handler.input_fn(body, ct)
        answer, _ = handler.output_fn(handler.predict_fn(data, model), None)
        if not bench.close(parse_answer(req, answer.encode()), req["expected"]):
            raise RuntimeError("%s: the in-process handler answered %r" % (name, answer[:200]))
        n = FLOOR_CALLS[req["app"]] // (10 if quick else 1)
        run = lambda: handler.predict_fn(data, model)  # noqa: E731 - run on the prepared input
        pre_run = lambda: handler.predict_fn(handler.input_fn(body, ct), model)  # noqa: E731
        whole = lambda: handler.output_fn(pre_run(), None)  # noqa: E731
        out[name] = {"run": time_calls(run, n), "pre_run": time_calls(pre_run, n), "handler": time_calls(whole, n)}
        out[name]["direct"] = out[name]["pre_run" if req["app"] == "image" else "run"]
        log("floor %s: run p50 %.1f us, direct p50 %.1f us, handler work p50 %.1f us" % (
            name, out[name]["run"]["p50_us"], out[name]["direct"]["p50_us"], out[name]["handler"]["p50_us"]))
    for k, v in saved.items():
        if v is None:
            del os.environ[k]
        else:
            os.environ[k] = v
    if os.sched_getaffinity(0) != cpus:
        raise RuntimeError("the floor changed this process's CPU affinity to %s" % os.sched_getaffinity(0))
    return out


# ---------------------------------------------------------------- servers and cells

def invoke(srv, req: dict):
    request = urllib.request.Request(srv.url("/invocations"), data=req["body"], method="POST",
                                     headers={"Content-Type": req["content_type"]})
    with urllib.request.urlopen(request, timeout=10) as r:
        return parse_answer(req, r.read())


def wait_answers(srv, reqs: list[dict]) -> float:
    """Seconds from start to the first correct answer; then every request kind must be answered correctly."""
    deadline = time.monotonic() + bench.START_TIMEOUT
    while True:
        if srv.proc.poll() is not None:
            raise RuntimeError("%s exited with %s; log: %s" % (srv.server, srv.proc.returncode, srv.log_path))
        try:
            invoke(srv, reqs[0])
            break
        except (urllib.error.URLError, ConnectionError, socket.timeout) as exc:
            if time.monotonic() > deadline:
                raise RuntimeError("%s not ready after %.0f s (%s)" % (srv.server, bench.START_TIMEOUT, exc)) from None
        time.sleep(0.1)
    ready_s = time.monotonic() - srv.t_start
    for req in reqs:
        got = invoke(srv, req)
        if not bench.close(got, req["expected"]):
            raise RuntimeError("%s answered %r to %s, expected %r" % (srv.server, got, req["desc"], req["expected"]))
    return ready_s


def measure(srv, req: dict, connections: int, duration: int, warmup: int) -> dict:
    text = "" if req["file"] else req["body"].decode()
    kw = {"body_file": req["file"], "content_type": req["content_type"]}
    if warmup:
        bench.wrk(srv.url(""), connections, warmup, text, **kw)
    watch = bench.CpuWatch(session_pids(srv.sid))
    load = bench.summarize(bench.wrk(srv.url(""), connections, duration, text, **kw))
    load["cpu"] = watch.stop()
    return load


def fewest_cpus(pids: list[int]) -> int | None:
    """The smallest CPU affinity among the processes (1 would mean a pinned process)."""
    sizes = []
    for pid in pids:
        try:
            sizes.append(len(os.sched_getaffinity(pid)))
        except OSError:
            pass
    return min(sizes, default=None)


def run_server(server: str, model: str, model_dir: str, requests: dict, duration: int, warmup: int, tmp: str,
               started) -> list[dict]:
    """Start one server, answer-check it, measure each of its request kinds at 1 and 8 connections, stop it."""
    names = [n for n, r in requests.items() if r["model"] == model]
    port = free_port()
    log("[%s] %s model=%s workers=%d port=%d" % (time.strftime("%H:%M:%S"), server, model, WORKERS, port))
    srv = bench.Server(server, model, model_dir, WORKERS, port, os.path.join(tmp, "runs", "%s-%s" % (model, server)),
                       extra_env=SMSERVE_ENV if server == "smserve" else PEER_ENV)
    cells, info, error = [], {}, None
    try:
        info["ready_s"] = round(wait_answers(srv, [requests[n] for n in names]), 3)
        pids = session_pids(srv.sid)
        info["processes"] = len(pids)
        info["listen"] = bench.listening_addrs(pids)
        beyond = [a for a in info["listen"] if not a.startswith(("127.0.0.1:", "[::ffff:127.0.0.1]:"))]
        if beyond:
            raise RuntimeError("%s listens beyond loopback: %s" % (server, beyond))
        for name in names:
            for connections in CONNECTIONS:
                load = measure(srv, requests[name], connections, duration, warmup)
                ok = not load["errors"]
                cells.append({"server": server, "request": name, "connections": connections, "workers": WORKERS,
                              "load": load, "ok": ok, "error": None if ok else json.dumps(load["error_detail"])})
                log("    %s c=%d: %.0f req/s  p50 %.3f ms  p99 %.3f ms  errors %d  other CPU %.0f%%" % (
                    name, connections, load["rps"], load["p50_ms"], load["p99_ms"], load["errors"],
                    load["cpu"]["other_cpu_pct"]))
        pids = session_pids(srv.sid)
        info["rss_mb"] = round(bench.rss_mb(pids), 1)
        info["fewest_cpus"] = fewest_cpus(pids)
    except Exception as exc:  # noqa: BLE001 - record the cells, go on with the next server
        error = "%s: %s" % (type(exc).__name__, exc)
        log("    FAILED: %s" % error)
    finally:
        if error or any(not c["ok"] for c in cells):
            bench.keep_log(srv, started, "failed")
        info["stop"] = srv.stop()
    measured = {(c["request"], c["connections"]) for c in cells}
    cells += [{"server": server, "request": n, "connections": c, "workers": WORKERS, "load": None, "ok": False,
               "error": error} for n in names for c in CONNECTIONS if (n, c) not in measured]
    for c in cells:
        c["server_info"] = info
    return cells


# ---------------------------------------------------------------- report

def ratio(a, b):
    return None if not a or not b else a / b


def evaluate(cells: list[dict], floor: dict) -> list[dict]:
    by = {(c["server"], c["request"], c["connections"]): c["load"] for c in cells if c["ok"]}
    checks = []
    for name in floor:
        s, p = by.get(("smserve", name, 8)), by.get(("peer", name, 8))
        rps = ratio(s and s["rps"], p and p["rps"])
        p99 = ratio(s and s["p99_ms"], p and p["p99_ms"])
        checks.append({"name": "%s: req/s >= %.1fx peer at 8 connections" % (name, TARGET_RPS_RATIO),
                       "ok": None if rps is None else rps >= TARGET_RPS_RATIO,
                       "detail": "%s vs %s req/s = %sx" % (fmt(s and s["rps"], 0), fmt(p and p["rps"], 0),
                                                           fmt(rps, 2))})
        checks.append({"name": "%s: p99 <= %.1fx peer at 8 connections" % (name, TARGET_P99_RATIO),
                       "ok": None if p99 is None else p99 <= TARGET_P99_RATIO,
                       "detail": "%s vs %s ms = %sx" % (fmt(s and s["p99_ms"], 2), fmt(p and p["p99_ms"], 2),
                                                        fmt(p99, 2))})
    for c in cells:
        if c["ok"] and c["connections"] == 1:
            f = floor[c["request"]]
            c["overhead_p50_ms"] = round(c["load"]["p50_ms"] - f["direct"]["p50_us"] / 1000, 3)
            c["over_handler_p50_ms"] = round(c["load"]["p50_ms"] - f["handler"]["p50_us"] / 1000, 3)
    return checks


def report(requests: dict, floor: dict, cells: list[dict], checks: list[dict]) -> str:
    by = {(c["server"], c["request"], c["connections"]): c for c in cells}
    load = lambda c, f, d=2: fmt(c["load"][f], d) if c and c["load"] else "-"  # noqa: E731
    rows = []
    for name in requests:
        for connections in CONNECTIONS:
            p, s = by.get(("peer", name, connections)), by.get(("smserve", name, connections))
            both = [x["load"] if x and x["load"] else None for x in (p, s)]
            get = lambda i, f: both[i] and both[i][f]  # noqa: E731
            other = "/".join(fmt(x["cpu"]["other_cpu_pct"], 0) if x else "-" for x in both)
            # server CPU per answered request: what bounds req/s once the two cores are busy
            cost = "/".join(fmt(x["cpu"]["server_cpu_pct"] * 10 / x["rps"], 3) if x else "-" for x in both)
            rows.append([name, str(connections), load(p, "rps", 0), load(p, "p50_ms"), load(p, "p99_ms"),
                         load(s, "rps", 0), load(s, "p50_ms"), load(s, "p99_ms"),
                         fmt(ratio(get(1, "rps"), get(0, "rps")), 2), fmt(ratio(get(1, "p99_ms"), get(0, "p99_ms")), 2),
                         cost, other])
    lines = ["### smserve vs the AWS stack, %d workers each" % WORKERS, ""]
    lines += markdown(["request", "conns", "peer req/s", "peer p50 ms", "peer p99 ms", "smserve req/s",
                       "smserve p50 ms", "smserve p99 ms", "req/s ratio", "p99 ratio",
                       "server CPU ms/request peer/smserve", "other CPU % peer/smserve"], rows)
    rows = []
    for name, req in requests.items():
        f = floor[name]
        row = [name, fmt(f["run"]["p50_us"] / 1000), fmt(f["direct"]["p50_us"] / 1000),
               "run" if req["app"] == "xgboost" else "decode + resize + run", fmt(f["handler"]["p50_us"] / 1000)]
        for server in SERVERS:
            c = by.get((server, name, 1))
            row += [load(c, "p50_ms", 3)] + [fmt(c.get(k) if c else None) for k in ("overhead_p50_ms",
                                                                                    "over_handler_p50_ms")]
        rows.append(row)
    lines += ["", "### Floor (in-process, p50 ms) and overhead at 1 connection (e2e p50 - direct p50, and e2e p50 - "
                  "whole handler work p50, ms)", ""]
    lines += markdown(["request", "DLRModel.run", "direct", "direct is", "whole handler work", "peer e2e p50",
                       "peer overhead", "peer - handler work", "smserve e2e p50", "smserve overhead",
                       "smserve - handler work"], rows)
    rows, seen = [], set()
    for c in cells:
        info, key = c["server_info"], (c["server"], requests[c["request"]]["model"])
        if key in seen:
            continue
        seen.add(key)
        stop = info.get("stop", {})
        rows.append([key[0], key[1], fmt(info.get("ready_s"), 2), str(info.get("processes", "-")),
                     fmt(info.get("rss_mb"), 0), str(info.get("fewest_cpus", "-")), str(stop.get("exit_code")),
                     str(len(stop.get("leftover_pids", [])))])
    lines += ["", "### Servers: start to first correct answer, processes, RSS and CPU affinity after the run, exit, "
                  "left after SIGTERM", ""]
    lines += markdown(["server", "model", "ready s", "processes", "RSS MB", "CPUs allowed (fewest)", "exit",
                       "left after SIGTERM"], rows)
    lines += ["", "### Targets (at 8 connections, %d workers each)" % WORKERS, ""]
    lines += ["- [%s] %s: %s" % (verdict(k["ok"]), k["name"], k["detail"]) for k in checks]
    failed = [c for c in cells if not c["ok"]]
    if failed:
        lines += ["", "### Failed cells", ""]
        lines += ["- %s %s c=%d: %s" % (c["server"], c["request"], c["connections"], c["error"]) for c in failed]
    noisy = [c for c in cells if c["load"] and c["load"]["cpu"]["other_cpu_pct"] > 10]
    if noisy:
        lines += ["", "WARNING: %d cells ran while other processes used > 10%% CPU (column 'other CPU %%'); rerun on "
                      "an idle machine before quoting them." % len(noisy)]
    return "\n".join(lines)


def package_versions() -> dict:
    """bench.versions() plus the DLR stack of both venvs."""
    info = bench.versions()
    for key, venv in (("peer_venv", bench.PEER_VENV), ("smserve_venv", bench.SMSERVE_VENV)):
        frz = bench.run_cmd([os.path.join(venv, "bin", "pip"), "freeze", "--disable-pip-version-check"])
        dlr_stack = {line for line in frz.splitlines() if line.lower().startswith(("dlr==", "pillow=="))}
        info[key] = sorted(set(info.get(key, [])) | dlr_stack)
    return info


# ---------------------------------------------------------------- main

def options() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=int, default=int(os.environ.get("BENCH_DURATION", "10")),
                    help="seconds of measurement per cell (default 10, or BENCH_DURATION)")
    ap.add_argument("--warmup", type=int, help="seconds of wrk warm-up per cell (default 2; 1 with --quick)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 s cells, a tenth of the floor calls")
    ap.add_argument("--json", help="write every number here (default bench/results/<UTC stamp>-neo.json)")
    ap.add_argument("--strict", action="store_true", help="exit 1 when a target is missed, too")
    args = ap.parse_args()
    if args.quick:
        args.duration = 2
    if args.warmup is None:
        args.warmup = 1 if args.quick else 2
    return args


def header(record: dict) -> str:
    env = record["environment"]
    return "\n".join([
        "## smserve Neo family benchmark", "",
        "- date: %s" % record["started"][:16].replace("T", " ") + " UTC",
        "- commit: %s" % record["commit"],
        "- command: `%s`" % record["command"],
        "- machine: %s CPUs (%s), %s, %s" % (env["cpus"], env.get("cpu_model"), env["wrk"], env.get("java")),
        "- peer: %s" % PEER_DESCRIPTION,
        "- method: wrk -t1 closed loop on 127.0.0.1, %d s after %d s warm-up per cell, %d workers per server, one "
        "server at a time (peer, then smserve, per model); overhead = e2e p50 - direct p50 at 1 connection%s" % (
            record["duration_s"], record["warmup_s"], WORKERS, "; --quick" if record["quick"] else ""), ""])


def main() -> int:
    args = options()
    ensure_setup()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwinds through the finally blocks: servers stop
    started = datetime.datetime.now(datetime.timezone.utc)
    exe = sys.executable
    record = {"started": started.isoformat(), "commit": commit(), "duration_s": args.duration,
              "command": shlex.join([os.path.relpath(exe, ROOT) if exe.startswith(ROOT + os.sep) else "python3"]
                                    + sys.argv),
              "warmup_s": args.warmup, "quick": args.quick, "workers": WORKERS, "peer_env": PEER_ENV,
              "targets": {"rps_ratio_min": TARGET_RPS_RATIO, "p99_ratio_max": TARGET_P99_RATIO}}
    neo_models = load_module("neo_models", NEO_MODELS)
    tmp = tempfile.mkdtemp(prefix="smserve-bench-neo-")
    cells: list[dict] = []
    try:
        dirs, requests = build(tmp, neo_models)
        floor = floors(dirs, requests, neo_models, args.quick)  # before any server runs
        for model, model_dir in dirs.items():
            for server in SERVERS:
                cells += run_server(server, model, model_dir, requests, args.duration, args.warmup, tmp, started)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    checks = evaluate(cells, floor)
    record.update(environment=package_versions(), floor=floor, cells=cells, checks=checks,
                  requests={n: {k: v for k, v in r.items() if k not in ("body", "file")} for n, r in requests.items()})
    record["table_markdown"] = report(requests, floor, cells, checks)
    print(header(record) + "\n" + record["table_markdown"])
    path = Path(args.json or os.path.join(bench.BENCH, "results", started.strftime("%Y-%m-%dT%H%M%SZ") + "-neo.json"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1))
    print("\nresults: %s" % path)
    failed = any(not c["ok"] for c in cells)
    missed = any(k["ok"] is False for k in checks)
    return 1 if failed or (args.strict and missed) else 0


if __name__ == "__main__":
    sys.exit(main())
