#!/usr/bin/env python3
"""Multi-model endpoints (`make bench-mme`): smserve's MXNet family in MME mode (.venv/mxnet) vs the AWS MXNet
toolkit on Multi Model Server in MME mode (sagemaker-mxnet-inference 1.5.5, sagemaker-inference 1.6.1,
multi-model-server 1.1.8; .venv/peer-mxnet, the peer of `make bench-mxnet`), back to back in the same run.

Models: copies of one MXNet Module checkpoint (Gluon MLP 4-64-64-2, bench/mxnet_model.py) served by the default
handlers, one worker per model on both servers. For each server:
  load     POST /models for 10 models, one after the other: seconds from the request to its 200
  memory   PSS (and RSS) of every process of the server, before any load and with the 10 models loaded and
           idle: per-model cost = the difference / 10. PSS counts a page shared by n processes as 1/n, so
           forked workers are not charged twice for what they share; RSS is shown beside it
  invoke   wrk through /models/<name>/invoke, the 10 models in turn, at 1 and 8 connections
  cycle    BENCH_MME_CYCLE requests (default 120) to 30 models with room for 10, the model of each request drawn
           from a Zipf-like distribution (seeded: both servers get the same sequence). smserve runs with
           SMSERVE_MME_MAX_MODELS=10 and SMSERVE_MME_EVICTION=lru: the client loads on a 404 and retries. The
           peer cannot evict: the client plays the platform, unloading its least recently used model before
           a load when 10 are loaded. Reported: wall time, requests/s, loads, p50/p99 per request.
Knobs: BENCH_DURATION (s per wrk cell, default 10), BENCH_WARMUP (2), BENCH_SERVERS=smserve,peer,
BENCH_MME_CYCLE, BENCH_NO_SETUP=1. Results: bench/results/<UTC stamp>-mme.json and a Markdown table on stdout.
Loopback only; every step is bounded (start, load and request timeouts). Not a CI gate.
"""
import datetime
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proc import envlist, free_port, log, remove_mms_leftovers, session_pids  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench")
SMSERVE_VENV = os.path.join(ROOT, ".venv", "mxnet")
PEER_VENV = os.path.join(ROOT, ".venv", "peer-mxnet")
PEER_REQUIREMENTS = os.path.join(BENCH, "peer_mxnet", "requirements.txt")
LUA = os.path.join(BENCH, "wrk", "mme.lua")
BODY = "[[0.5, -1.25, 2.0, 3.5]]"
LOADED, TOTAL, ROOM = 10, 30, 10
START_TIMEOUT, LOAD_TIMEOUT, REQUEST_TIMEOUT = 120.0, 120.0, 30.0
TARGETS = {"load_speedup": 2.0, "rps_ratio": 2.0, "p99_ratio": 0.5, "memory_ratio": 1.0}


def ensure_setup(servers):
    if os.environ.get("BENCH_NO_SETUP") == "1":
        return
    if "peer" in servers:
        subprocess.run([os.path.join(ROOT, "scripts", "bench-peer-setup.sh")], check=True)  # java, wrk
        stamp = os.path.join(PEER_VENV, ".bench-peer-installed")
        if not os.path.exists(stamp) or os.path.getmtime(PEER_REQUIREMENTS) > os.path.getmtime(stamp):
            if not os.path.exists(os.path.join(PEER_VENV, "bin", "python")):
                subprocess.run(["python3.11", "-m", "venv", PEER_VENV], check=True)
            subprocess.run([os.path.join(PEER_VENV, "bin", "pip"), "install", "-q", "--disable-pip-version-check",
                            "-r", PEER_REQUIREMENTS], check=True)
            open(stamp, "w").close()
    if "smserve" in servers:
        subprocess.run(["make", "-s", ".venv/mxnet/.installed"], cwd=ROOT, check=True)
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: run scripts/bench-peer-setup.sh")


def build_models(tmp):
    """TOTAL copies of one checkpoint under tmp/models/m00..; returns (models root, expected answer)."""
    first = os.path.join(tmp, "build")
    out = subprocess.run([os.path.join(SMSERVE_VENV, "bin", "python"), os.path.join(BENCH, "mxnet_model.py"),
                          "build", first, BODY], cwd=BENCH, check=True, capture_output=True, text=True).stdout
    expected = json.loads(out.strip().splitlines()[-1])["expected"]
    root = os.path.join(tmp, "models")
    for i in range(TOTAL):
        shutil.copytree(first, os.path.join(root, "m%02d" % i))
    return root, expected


# ---------------------------------------------------------------- servers

class Endpoint:
    """One multi-model server on a free loopback port, in its own session (every process it starts is found)."""

    def __init__(self, kind, models_root, run_dir, cycle=False):
        self.kind, self.models_root, self.run_dir = kind, models_root, run_dir
        self.port = free_port()
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("SMSERVE_", "SAGEMAKER_", "MMS_", "OMP_", "MKL_", "MXNET_"))}
        env.update(SAGEMAKER_MULTI_MODEL="true", SAGEMAKER_MODEL_SERVER_WORKERS="1")
        if kind == "smserve":
            env.update(SMSERVE_FAMILY="mxnet", SMSERVE_MME_MODELS_ROOT=models_root, SMSERVE_ACCESS_LOG="true")
            if cycle:
                env.update(SMSERVE_MME_MAX_MODELS=str(ROOM), SMSERVE_MME_EVICTION="lru")
            empty = os.path.join(run_dir, "model")
            os.makedirs(empty, exist_ok=True)
            cmd = [os.path.join(SMSERVE_VENV, "bin", "smserve"), "serve", "--model-dir", empty,
                   "--port", str(self.port), "--host", "127.0.0.1"]
        else:
            # the toolkit imports the entry module (SAGEMAKER_PROGRAM) from $SAGEMAKER_BASE_DIR/model/code
            universal = os.path.join(run_dir, "universal")
            os.makedirs(os.path.join(universal, "code"), exist_ok=True)
            shutil.copy(os.path.join(models_root, "m00", "code", "inference.py"),
                        os.path.join(universal, "code", "inference.py"))
            cmd = [os.path.join(PEER_VENV, "bin", "python"), os.path.join(BENCH, "peer_mxnet", "serve.py"),
                   "--model-dir", universal, "--port", str(self.port), "--run-dir", os.path.join(run_dir, "peer")]
        self.log_path = os.path.join(run_dir, "server.log")
        self.log_file = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, cwd=run_dir, env=env, stdout=self.log_file, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        self.wait_ping()

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def call(self, method, path, body=None, timeout=REQUEST_TIMEOUT):
        """(status, parsed or raw body)."""
        data = body.encode() if isinstance(body, str) else body
        request = urllib.request.Request(self.url(path), data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw

    def wait_ping(self):
        end = time.monotonic() + START_TIMEOUT
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError("%s exited with %s; log %s" % (self.kind, self.proc.returncode, self.log_path))
            try:
                if self.call("GET", "/ping", timeout=2)[0] == 200:
                    return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise RuntimeError("%s: /ping not 200 within %.0f s; log %s" % (self.kind, START_TIMEOUT, self.log_path))

    def load(self, name):
        """Seconds from POST /models to its 200."""
        body = json.dumps({"model_name": name, "url": os.path.join(self.models_root, name)})
        started = time.monotonic()
        status, answer = self.call("POST", "/models", body, timeout=LOAD_TIMEOUT)
        if status != 200:
            raise RuntimeError("%s: loading %s answered %s %s; log %s" % (self.kind, name, status, answer,
                                                                             self.log_path))
        return time.monotonic() - started

    def unload(self, name):
        status, answer = self.call("DELETE", "/models/" + name, timeout=LOAD_TIMEOUT)
        if status != 200:
            raise RuntimeError("%s: unloading %s answered %s %s" % (self.kind, name, status, answer))

    def invoke(self, name):
        return self.call("POST", "/models/%s/invoke" % name, BODY)

    def memory(self):
        """(PSS, RSS) in MB over every process of the server."""
        pss = rss = 0
        for pid in session_pids(self.proc.pid):
            try:
                with open("/proc/%d/smaps_rollup" % pid) as f:
                    fields = dict(line.split(":", 1) for line in f if ":" in line and not line.startswith(" "))
            except OSError:
                continue
            pss += int(fields.get("Pss", "0 kB").split()[0])
            rss += int(fields.get("Rss", "0 kB").split()[0])
        return pss / 1024, rss / 1024

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for sig in (signal.SIGTERM, signal.SIGKILL):  # MMS leaves its Java frontend and workers behind
            for pid in session_pids(self.proc.pid):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            end = time.monotonic() + 5
            while session_pids(self.proc.pid) and time.monotonic() < end:
                time.sleep(0.1)
        if self.kind == "peer":
            remove_mms_leftovers()
        self.log_file.close()


def close(got, expected):
    if isinstance(expected, list):
        return isinstance(got, list) and len(got) == len(expected) and all(close(g, e) for g, e in zip(got, expected))
    return isinstance(got, (int, float)) and abs(got - expected) <= 1e-4 * max(1.0, abs(expected))


# ---------------------------------------------------------------- phases

def wrk(endpoint, names, connections, duration):
    env = dict(os.environ, BENCH_BODY=BODY, BENCH_CONTENT_TYPE="application/json", BENCH_MODEL_NAMES=",".join(names))
    cmd = ["wrk", "-t1", "-c%d" % connections, "-d%ds" % duration, "--timeout", "10s", "-s", LUA, endpoint.url("")]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=duration + 60)
    for line in out.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            w = json.loads(line[len("BENCH_JSON "):])
            seconds = w["duration_us"] / 1e6
            return {"rps": round(w["requests"] / seconds, 1), "p50_ms": round(w["latency_us"]["p50"] / 1000, 3),
                    "p99_ms": round(w["latency_us"]["p99"] / 1000, 3), "errors": sum(w["errors"].values())}
    raise RuntimeError("wrk gave no summary: %s %s" % (out.stdout, out.stderr))


def measure_loaded(kind, models_root, expected, run_dir, duration, warmup):
    endpoint = Endpoint(kind, models_root, run_dir)
    try:
        time.sleep(1.0)
        idle_pss, idle_rss = endpoint.memory()
        names = ["m%02d" % i for i in range(LOADED)]
        loads = [endpoint.load(name) for name in names]
        for name in names:
            status, answer = endpoint.invoke(name)
            if status != 200 or not close(answer, expected):
                raise RuntimeError("%s: %s answered %s %r, expected %r" % (kind, name, status, answer, expected))
        time.sleep(2.0)
        pss, rss = endpoint.memory()
        result = {"load_s": sorted(round(s, 3) for s in loads),
                  "load_median_s": round(sorted(loads)[len(loads) // 2], 3),
                  "memory_idle_mb": {"pss": round(idle_pss, 1), "rss": round(idle_rss, 1)},
                  "memory_loaded_mb": {"pss": round(pss, 1), "rss": round(rss, 1)},
                  "per_model_mb": {"pss": round((pss - idle_pss) / LOADED, 1),
                                   "rss": round((rss - idle_rss) / LOADED, 1)}}
        for connections in (1, 8):
            if warmup:
                wrk(endpoint, names, connections, warmup)
            result["c%d" % connections] = wrk(endpoint, names, connections, duration)
            log("  %s c=%d: %s" % (kind, connections, result["c%d" % connections]))
        return result
    finally:
        endpoint.stop()


def cycle_sequence(count, seed=7):
    """Model names for the cycling workload: Zipf-like (weight 1/rank^1.1) over TOTAL models, a fixed seed."""
    rng = random.Random(seed)
    weights = [1 / (rank ** 1.1) for rank in range(1, TOTAL + 1)]
    order = list(range(TOTAL))
    rng.shuffle(order)
    return ["m%02d" % order[rng.choices(range(TOTAL), weights)[0]] for _ in range(count)]


def measure_cycle(kind, models_root, expected, run_dir, sequence):
    endpoint = Endpoint(kind, models_root, run_dir, cycle=True)
    loaded = []  # least recently used first (the peer's client-side bookkeeping)
    latencies, loads, evictions = [], 0, 0
    started = time.monotonic()
    try:
        for name in sequence:
            t0 = time.monotonic()
            if kind == "smserve":
                status, answer = endpoint.invoke(name)
                if status == 404:  # not loaded, or evicted by the server to make room: load and retry
                    endpoint.load(name)
                    loads += 1
                    status, answer = endpoint.invoke(name)
            else:
                if name not in loaded:
                    if len(loaded) >= ROOM:  # the platform unloads on 507; the peer never says it, so the client
                        endpoint.unload(loaded.pop(0))
                        evictions += 1
                    endpoint.load(name)
                    loads += 1
                else:
                    loaded.remove(name)
                loaded.append(name)
                status, answer = endpoint.invoke(name)
            if status != 200 or not close(answer, expected):
                raise RuntimeError("%s: %s answered %s %r during the cycle" % (kind, name, status, answer))
            latencies.append(time.monotonic() - t0)
        wall = time.monotonic() - started
        if kind == "smserve":
            status, metrics = endpoint.call("GET", "/metrics")
            text = metrics.decode() if isinstance(metrics, bytes) else str(metrics)
            evictions = next((int(float(line.split()[-1])) for line in text.splitlines()
                              if line.startswith("smserve_mme_evictions_total")), None)
    finally:
        endpoint.stop()
    latencies.sort()
    return {"requests": len(sequence), "wall_s": round(wall, 2), "rps": round(len(sequence) / wall, 2),
            "loads": loads, "evictions": evictions,
            "p50_ms": round(1000 * latencies[len(latencies) // 2], 1),
            "p99_ms": round(1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 1)}


# ---------------------------------------------------------------- report

def ratio(a, b):
    return None if not a or not b else round(a / b, 2)


def report(results):
    s, p = results.get("smserve"), results.get("peer")
    lines = ["| measure | peer | smserve | ratio (smserve / peer) | target |", "|---|---|---|---|---|"]
    checks = []

    def row(label, key, fmt, target=None, higher_better=True):
        a, b = (key(s) if s else None), (key(p) if p else None)
        r = ratio(a, b)
        ok = None
        if target is not None and r is not None:
            ok = r >= target if higher_better else r <= target
            checks.append((label, ok))
        mark = "" if ok is None else (" ✓" if ok else " ✗")
        lines.append("| %s | %s | %s | %s%s | %s |" % (label, fmt % b if b is not None else "-",
                                                      fmt % a if a is not None else "-", r if r is not None else "-",
                                                      mark, "-" if target is None else
                                                      ("≥ %g×" % target if higher_better else "≤ %g×" % target)))
    if s and p:
        speedup = ratio(p["loaded"]["load_median_s"], s["loaded"]["load_median_s"])
        ok = speedup is not None and speedup >= TARGETS["load_speedup"]
        checks.append(("load", ok))
        lines.append("| load, median of %d (s) | %.2f | %.2f | %s× faster%s | ≥ %g× faster |" % (
            LOADED, p["loaded"]["load_median_s"], s["loaded"]["load_median_s"], speedup, " ✓" if ok else " ✗",
            TARGETS["load_speedup"]))
    for c in (1, 8):
        row("invoke c=%d req/s" % c, lambda r, c=c: r["loaded"]["c%d" % c]["rps"], "%.0f", TARGETS["rps_ratio"])
        row("invoke c=%d p99 (ms)" % c, lambda r, c=c: r["loaded"]["c%d" % c]["p99_ms"], "%.2f",
            TARGETS["p99_ratio"], higher_better=False)
    row("memory per idle model, PSS (MB)", lambda r: r["loaded"]["per_model_mb"]["pss"], "%.1f",
        TARGETS["memory_ratio"], higher_better=False)
    row("memory per idle model, RSS (MB)", lambda r: r["loaded"]["per_model_mb"]["rss"], "%.1f")
    row("cycle: 30 models, room for 10, req/s", lambda r: r["cycle"]["rps"], "%.2f")
    row("cycle: loads", lambda r: r["cycle"]["loads"], "%d")
    row("cycle: p99 per request (ms)", lambda r: r["cycle"]["p99_ms"], "%.0f")
    return "\n".join(lines), checks


def main():
    servers = envlist("BENCH_SERVERS", "smserve,peer")
    duration = int(os.environ.get("BENCH_DURATION", "10"))
    warmup = int(os.environ.get("BENCH_WARMUP", "2"))
    cycle = int(os.environ.get("BENCH_MME_CYCLE", "120"))
    ensure_setup(servers)
    started = datetime.datetime.now(datetime.timezone.utc)
    tmp = tempfile.mkdtemp(prefix="bench-mme-")
    results = {}
    try:
        models_root, expected = build_models(tmp)
        sequence = cycle_sequence(cycle)
        for kind in ("peer", "smserve"):
            if kind not in servers:
                continue
            log("%s: %d models loaded one by one, memory, invoke at 1 and 8 connections" % (kind, LOADED))
            results[kind] = {"loaded": measure_loaded(kind, models_root, expected, os.path.join(tmp, kind),
                                                      duration, warmup)}
            log("%s: cycling %d requests over %d models with room for %d" % (kind, cycle, TOTAL, ROOM))
            results[kind]["cycle"] = measure_cycle(kind, models_root, expected, os.path.join(tmp, kind + "-cycle"),
                                                   sequence)
            log("  %s" % json.dumps(results[kind]))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    table, checks = report(results)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    header = "make bench-mme, %s, commit %s, %d CPUs; peer: sagemaker-mxnet-inference 1.5.5 on MMS 1.1.8" % (
        started.strftime("%Y-%m-%d %H:%M UTC"), commit, os.cpu_count())
    print(header + "\n\n" + table)
    missed = [label for label, ok in checks if not ok]
    print("\ntargets missed: %s" % (", ".join(missed) if missed else "none"))
    out = os.path.join(BENCH, "results", started.strftime("%Y-%m-%dT%H%M%SZ") + "-mme.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump({"started": started.isoformat(), "commit": commit, "results": results, "table": table,
                   "missed": missed, "duration_s": duration, "cycle_requests": cycle}, f, indent=1)
    log("results: %s" % os.path.relpath(out, ROOT))
    return 1 if os.environ.get("BENCH_STRICT") == "1" and missed else 0


if __name__ == "__main__":
    sys.exit(main())
