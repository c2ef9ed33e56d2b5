#!/usr/bin/env python3
"""smserve vs the AWS stack (sagemaker-inference 1.10.1 on Multi Model Server 1.1.11): `make bench`.

For every model (no-op inference.py, small TorchScript MLP) x workers (1, 2) x connections (1, 8) and
both servers (run back to back for the same cell, so drift hits both): start the server on a free
127.0.0.1 port, wait until /ping is 200 and one invocation returns the expected answer, warm up with
wrk, measure with wrk (1 thread, closed loop, bounded duration), stop the server, and check that no
process of its session is left. Server overhead = end-to-end p50 at 1 connection minus the predict
p50 measured in-process by bench/predict_time.py with the server's own venv.

Environment (all optional):
  BENCH_DURATION=10     seconds of measurement per cell      BENCH_WARMUP=2   seconds of warm-up
  BENCH_SERVERS=smserve,peer   BENCH_MODELS=noop,mlp   BENCH_WORKERS=1,2   BENCH_CONNECTIONS=1,8
  BENCH_STRICT=1        exit 1 when a target is missed (default: report only; not a CI gate)
  BENCH_NO_SETUP=1      do not create missing venvs / install the peer
Only loopback traffic; every run is bounded by the durations above plus start/stop timeouts.
"""
import datetime
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench")
sys.path.insert(0, BENCH)
from proc import (envlist, free_port, log, machine_busy_s, procs_cpu_s, remove_mms_leftovers,  # noqa: E402
                  session_pids)
PEER_VENV = os.path.join(ROOT, ".venv", "peer-mms")
SMSERVE_VENV = os.path.join(ROOT, ".venv", "pytorch")
LUA = os.path.join(BENCH, "wrk", "post.lua")

START_TIMEOUT = float(os.environ.get("BENCH_START_TIMEOUT", "120"))
STOP_TIMEOUT = 30.0

MODELS = {
    "noop": {"body": "[1, 2.5, 3]", "expected": [2, 5.0, 6],
             "desc": "code/inference.py: model_fn/input_fn/predict_fn (doubles the list)/output_fn"},
    "mlp": {"body": "[[0.5, -1.25, 2.0, 3.5]]", "expected": None,  # filled from make_mlp.py
            "desc": "model.pt only: TorchScript MLP 4-64-64-2, default handlers"},
}

# Targets: issue 2 item 6 (ratios vs the peer) and peers.md §5 (absolute, no-op handler, this machine class).
RATIO_RPS_MIN = 2.0
RATIO_P99_MAX = 0.5
OVERHEAD_P50_MAX_MS = 0.35
PEER_DESCRIPTION = "sagemaker-inference 1.10.1 on multi-model-server 1.1.11 (Java frontend)"
LOG_MB_PER_10K_MAX = 1.5  # peers.md §5: log volume per 10k requests with the access log on (MMS: 2.3 MB)
ABSOLUTE = [  # (workers, connections, metric, op, value)
    (1, 1, "rps", ">=", 3000), (1, 1, "p50_ms", "<=", 0.35), (1, 1, "p99_ms", "<=", 1.5),
    (1, 8, "rps", ">=", 4000), (1, 8, "p99_ms", "<=", 6.0), (2, 8, "rps", ">=", 4000),
]


def dir_bytes(path):
    """Bytes of every file below `path`: the server's stdout log and, for MMS, its log4j files (LOG_LOCATION)."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except OSError:
                pass
    return total


def run_cmd(cmd, **kw):
    return subprocess.run(cmd, check=True, text=True, capture_output=True, **kw).stdout


# ---------------------------------------------------------------- setup

def ensure_setup(servers):
    no_setup = os.environ.get("BENCH_NO_SETUP") == "1"
    if "peer" in servers and not no_setup:
        subprocess.run([os.path.join(ROOT, "scripts", "bench-peer-setup.sh")], check=True)
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: run scripts/bench-peer-setup.sh (apt-get install -y wrk)")
    if "smserve" in servers and not os.path.exists(os.path.join(SMSERVE_VENV, "bin", "smserve")):
        if no_setup:
            sys.exit(".venv/pytorch/bin/smserve missing: run `make venv-pytorch`")
        log("creating .venv/pytorch for smserve")
        subprocess.run(["make", "venv-pytorch"], cwd=ROOT, check=True)


def python_of(server):
    return os.path.join(PEER_VENV if server == "peer" else SMSERVE_VENV, "bin", "python")


def build_models(tmp):
    dirs = {}
    noop = os.path.join(tmp, "models", "noop")
    shutil.copytree(os.path.join(BENCH, "models", "noop"), noop)
    dirs["noop"] = noop
    mlp = os.path.join(tmp, "models", "mlp")
    py = next((p for p in (python_of("smserve"), python_of("peer")) if os.path.exists(p)
               and subprocess.run([p, "-c", "import torch"], capture_output=True).returncode == 0), None)
    if py is None:
        sys.exit("no venv with torch to build the MLP (.venv/pytorch or .venv/peer-mms)")
    out = json.loads(run_cmd([py, os.path.join(BENCH, "make_mlp.py"), mlp]).strip().splitlines()[-1])
    MODELS["mlp"]["expected"] = out["expected"]
    dirs["mlp"] = mlp
    return dirs


# ---------------------------------------------------------------- processes

def cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()[:160]
    except OSError:
        return "?"


class CpuWatch:
    """How much CPU the rest of the machine used while a cell was measured (noise indicator)."""

    def __init__(self, pids):
        import resource

        self.resource = resource
        self.pids = pids
        self.t0 = time.monotonic()
        self.busy0 = machine_busy_s()
        self.srv0 = procs_cpu_s(pids)
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        me = resource.getrusage(resource.RUSAGE_SELF)
        self.kids0 = ru.ru_utime + ru.ru_stime + me.ru_utime + me.ru_stime

    def stop(self):
        wall = time.monotonic() - self.t0
        b1 = machine_busy_s()
        busy, irq = b1[0] - self.busy0[0], b1[1] - self.busy0[1]
        srv = procs_cpu_s(self.pids) - self.srv0
        ru = self.resource.getrusage(self.resource.RUSAGE_CHILDREN)
        me = self.resource.getrusage(self.resource.RUSAGE_SELF)
        kids = ru.ru_utime + ru.ru_stime + me.ru_utime + me.ru_stime - self.kids0
        ncpu = os.cpu_count() or 1
        return {"server_cpu_pct": round(100 * srv / wall, 1), "wrk_cpu_pct": round(100 * kids / wall, 1),
                "other_cpu_pct": round(100 * max(0.0, busy - srv - kids) / wall, 1),
                "softirq_cpu_pct": round(100 * irq / wall, 1),
                "machine_busy_pct": round(100 * (busy + irq) / (wall * ncpu), 1)}


def rss_mb(pids):
    total = 0
    for p in pids:
        try:
            with open("/proc/%d/statm" % p) as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            pass
    return total / 1e6


def listening_addrs(pids):
    """Listening TCP sockets owned by pids, from `ss -ltnpH`."""
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True).stdout
    addrs = []
    for line in out.splitlines():
        if any("pid=%d," % p in line for p in pids):
            addrs.append(line.split()[3])
    return addrs


class Server:
    def __init__(self, server, model, model_dir, workers, port, run_dir, extra_env=None):
        self.server, self.model, self.workers, self.port = server, model, workers, port
        self.run_dir = run_dir
        os.makedirs(run_dir, exist_ok=True)
        env = dict(os.environ)
        for k in list(env):
            if k.startswith(("SMSERVE_", "SAGEMAKER_", "MMS_", "OMP_", "MKL_")):
                del env[k]
        env["SAGEMAKER_MODEL_SERVER_WORKERS"] = str(workers)
        if server == "smserve":
            env.update(SMSERVE_FAMILY="pytorch", SMSERVE_SKIP_REQUIREMENTS="true", SMSERVE_ACCESS_LOG="true")
            cmd = [os.path.join(SMSERVE_VENV, "bin", "smserve"), "serve", "--model-dir", model_dir,
                   "--port", str(port), "--host", "127.0.0.1"]
        else:
            cmd = [python_of("peer"), os.path.join(BENCH, "peer_mms", "serve.py"), "--model-dir", model_dir,
                   "--port", str(port), "--run-dir", run_dir]
        env.update(extra_env or {})
        self.log_path = os.path.join(run_dir, "server.log")
        self.log_file = open(self.log_path, "wb")
        self.t_start = time.monotonic()
        self.proc = subprocess.Popen(cmd, cwd=run_dir, env=env, stdout=self.log_file, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        self.sid = self.proc.pid

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def wait_ready(self, body, expected):
        deadline = time.monotonic() + START_TIMEOUT
        ping_s = None
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("%s exited with %s; log: %s" % (self.server, self.proc.returncode, self.log_path))
            try:
                if ping_s is None:
                    with urllib.request.urlopen(self.url("/ping"), timeout=2) as r:
                        if r.status == 200:
                            ping_s = time.monotonic() - self.t_start
                if ping_s is not None:
                    req = urllib.request.Request(self.url("/invocations"), data=body.encode(), method="POST",
                                                 headers={"Content-Type": "application/json"})
                    with urllib.request.urlopen(req, timeout=10) as r:
                        got = json.loads(r.read())
                        if not close(got, expected):
                            raise RuntimeError("%s answered %r, expected %r" % (self.server, got, expected))
                        return ping_s, time.monotonic() - self.t_start
            except (urllib.error.URLError, ConnectionError, socket.timeout, json.JSONDecodeError) as e:
                last = e
            time.sleep(0.1)
        raise RuntimeError("%s not ready after %.0fs (%s); log: %s" % (self.server, START_TIMEOUT, last, self.log_path))

    def stop(self):
        """SIGTERM the server, then clean up anything left in its session (MMS orphans its worker parent)."""
        info = {"exit_code": None, "stop_s": None, "leftover_pids": []}
        t0 = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            info["exit_code"] = self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            info["exit_code"] = self.proc.wait()
        info["stop_s"] = round(time.monotonic() - t0, 3)
        time.sleep(0.5)
        left = session_pids(self.sid)
        info["leftover_pids"] = left
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for p in session_pids(self.sid):
                try:
                    os.kill(p, sig)
                except ProcessLookupError:
                    pass
            end = time.monotonic() + 5
            while session_pids(self.sid) and time.monotonic() < end:
                time.sleep(0.1)
        still = session_pids(self.sid)
        if still:
            raise RuntimeError("processes of %s survive SIGKILL: %s" % (self.server, still))
        if self.server == "peer":
            remove_mms_leftovers()
        self.log_file.close()
        return info


def close(got, expected):
    if isinstance(expected, dict):  # TF Serving's {"predictions": ...}: float32 values compared with tolerance
        return isinstance(got, dict) and got.keys() == expected.keys() and all(close(got[k], v)
                                                                                  for k, v in expected.items())
    if isinstance(expected, list):
        return isinstance(got, list) and len(got) == len(expected) and all(close(g, e) for g, e in zip(got, expected))
    if isinstance(expected, (int, float)):
        return isinstance(got, (int, float)) and abs(got - expected) <= 1e-4 * max(1.0, abs(expected))
    return got == expected


def keep_log(srv, started, why):
    """Copy a failed cell's server logs to bench/results/<stamp>-logs/ (the run dir is temporary)."""
    dst = os.path.join(BENCH, "results", started.strftime("%Y-%m-%dT%H%M%SZ") + "-logs",
                       os.path.basename(srv.run_dir) + "-" + why)
    os.makedirs(dst, exist_ok=True)
    try:
        srv.log_file.flush()
    except ValueError:
        pass
    shutil.copy(srv.log_path, dst)
    if os.path.isdir(os.path.join(srv.run_dir, "logs")):
        shutil.copytree(os.path.join(srv.run_dir, "logs"), os.path.join(dst, "logs"), dirs_exist_ok=True)
    log("    server logs kept in %s" % os.path.relpath(dst, ROOT))


# ---------------------------------------------------------------- load

def wrk(url, connections, duration, body, timeout_s=10, body_file=None, content_type="application/json"):
    env = dict(os.environ, BENCH_BODY=body, BENCH_CONTENT_TYPE=content_type)
    if body_file:  # the answer in the request's format (an NPY echo answered as JSON would measure JSON encoding)
        env.update(BENCH_BODY_FILE=body_file, BENCH_ACCEPT=content_type)
    cmd = ["wrk", "-t1", "-c%d" % connections, "-d%ds" % duration, "--timeout", "%ds" % timeout_s,
           "-s", LUA, url + "/invocations"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=duration + timeout_s + 30)
    for line in out.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            return json.loads(line[len("BENCH_JSON "):])
    raise RuntimeError("wrk gave no summary: %s %s" % (out.stdout, out.stderr))


def summarize(w):
    lat = w["latency_us"]
    secs = w["duration_us"] / 1e6
    errs = sum(w["errors"].values())
    return {"rps": round(w["requests"] / secs, 1), "requests": w["requests"],
            "p50_ms": round(lat["p50"] / 1000, 3), "p90_ms": round(lat["p90"] / 1000, 3),
            "p99_ms": round(lat["p99"] / 1000, 3), "max_ms": round(lat["max"] / 1000, 3),
            "errors": errs, "error_detail": w["errors"]}


def predict_time(server, model, model_dir):
    out = run_cmd([python_of(server), os.path.join(BENCH, "predict_time.py"), model, model_dir, MODELS[model]["body"],
                   "20000" if model == "noop" else "5000"])
    return json.loads(out.strip().splitlines()[-1])


# ---------------------------------------------------------------- report

def fmt(v, nd=2):
    return "-" if v is None else ("%.*f" % (nd, v))


def ratio(a, b):
    return None if not a or not b else a / b


def report(results, predict, checks):
    lines = []
    cells = {}
    for r in results:
        cells[(r["model"], r["workers"], r["connections"], r["server"])] = r
    keys = sorted({(r["model"], r["workers"], r["connections"]) for r in results},
                  key=lambda k: (list(MODELS).index(k[0]), k[1], k[2]))
    lines.append("| model | w | c | peer req/s | peer p50 | peer p99 | smserve req/s | smserve p50 | smserve p99 "
                 "| req/s ratio | p99 ratio | errors peer/smserve | other CPU % peer/smserve |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for k in keys:
        p, s = cells.get(k + ("peer",), {}).get("load"), cells.get(k + ("smserve",), {}).get("load")
        g = lambda d, f: None if not d else d[f]  # noqa: E731
        oc = lambda d: "-" if not d or "cpu" not in d else "%.0f" % d["cpu"]["other_cpu_pct"]  # noqa: E731
        lines.append("| %s | %d | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s/%s | %s/%s |" % (
            k[0], k[1], k[2], fmt(g(p, "rps"), 0), fmt(g(p, "p50_ms")), fmt(g(p, "p99_ms")),
            fmt(g(s, "rps"), 0), fmt(g(s, "p50_ms")), fmt(g(s, "p99_ms")),
            fmt(ratio(g(s, "rps"), g(p, "rps"))), fmt(ratio(g(s, "p99_ms"), g(p, "p99_ms"))),
            "-" if not p else p["errors"], "-" if not s else s["errors"], oc(p), oc(s)))
        if (p and p["errors"]) or (s and s["errors"]):
            lines[-1] += " <- errors: numbers not comparable"
    noisy = [r for r in results if r["load"].get("cpu", {}).get("other_cpu_pct", 0) > 10]
    if noisy:
        lines.append("")
        lines.append("WARNING: %d cells ran while other processes used > 10%% CPU (column 'other CPU %%'); "
                     "rerun on an idle machine before quoting them." % len(noisy))
    lines.append("")
    lines.append("Server overhead at 1 connection = e2e p50 - predict p50 (ms):")
    lines.append("")
    lines.append("| model | w | predict p50 (us) | peer e2e p50 | peer overhead | smserve e2e p50 | smserve overhead |")
    lines.append("|---|---|---|---|---|---|---|")
    for k in keys:
        if k[2] != 1:
            continue
        row = [k[0], str(k[1])]
        pt = [predict.get((srv, k[0]), {}).get("p50_us") for srv in ("peer", "smserve")]
        row.append("/".join(fmt(x, 1) for x in pt if x is not None) or "-")
        for srv in ("peer", "smserve"):
            c = cells.get(k + (srv,))
            row += [fmt(c["load"]["p50_ms"], 3), fmt(c["overhead_p50_ms"], 3)] if c else ["-", "-"]
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    lines.append("Start to first /ping 200 and to the first correct answer (s), processes in the server session, RSS after the run (MB), "
                 "log volume written during the measurement (MB per 10k requests, access log on), leftovers after SIGTERM:")
    lines.append("")
    lines.append("| server | model | w | c | ping s | ready s | processes | RSS MB | log MB/10k | exit | processes left after SIGTERM |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in sorted(results, key=lambda r: (r["server"], list(MODELS).index(r["model"]), r["workers"], r["connections"])):
        lines.append("| %s | %s | %d | %d | %s | %s | %d | %s | %s | %s | %d |" % (
            r["server"], r["model"], r["workers"], r["connections"], fmt(r["ping_s"]), fmt(r["ready_s"]),
            len(r["processes"]), fmt(r["rss_mb"], 0), fmt(r["load"].get("log_mb_per_10k"), 3),
            r["stop"]["exit_code"], len(r["stop"]["leftover_pids"])))
    lines.append("")
    lines.append("Targets (no-op handler; ratios from issue 2 item 6, absolutes from peers.md §5):")
    lines.append("")
    for c in checks:
        lines.append("- [%s] %s: %s" % ({True: "PASS", False: "FAIL", None: "n/a "}[c["ok"]], c["name"], c["detail"]))
    return "\n".join(lines)


def evaluate(results):
    cells = {(r["model"], r["workers"], r["connections"], r["server"]): r for r in results}
    checks = []

    def get(w, c, srv, f):
        r = cells.get(("noop", w, c, srv))
        if not r:
            return None
        return r["overhead_p50_ms"] if f == "overhead" else r["load"][f]

    for w in (1, 2):
        s, p = get(w, 8, "smserve", "rps"), get(w, 8, "peer", "rps")
        rr = ratio(s, p)
        checks.append({"name": "req/s >= %.1fx peer, w=%d c=8" % (RATIO_RPS_MIN, w),
                       "ok": None if rr is None else rr >= RATIO_RPS_MIN,
                       "detail": "smserve %s vs peer %s = %sx" % (fmt(s, 0), fmt(p, 0), fmt(rr))})
        s, p = get(w, 8, "smserve", "p99_ms"), get(w, 8, "peer", "p99_ms")
        rr = ratio(s, p)
        checks.append({"name": "p99 <= %.1fx peer, w=%d c=8" % (RATIO_P99_MAX, w),
                       "ok": None if rr is None else rr <= RATIO_P99_MAX,
                       "detail": "smserve %s ms vs peer %s ms = %sx" % (fmt(s), fmt(p), fmt(rr))})
    for w in (1, 2):
        o = get(w, 1, "smserve", "overhead")
        checks.append({"name": "smserve overhead p50 <= %.2f ms, w=%d c=1" % (OVERHEAD_P50_MAX_MS, w),
                       "ok": None if o is None else o <= OVERHEAD_P50_MAX_MS,
                       "detail": "%s ms (peer %s ms)" % (fmt(o, 3), fmt(get(w, 1, "peer", "overhead"), 3))})
    for w, c, f, op, v in ABSOLUTE:
        s = get(w, c, "smserve", f)
        ok = None if s is None else (s >= v if op == ">=" else s <= v)
        checks.append({"name": "peers.md §5: %s %s %s, w=%d c=%d" % (f, op, v, w, c), "ok": ok,
                       "detail": "smserve %s" % fmt(s)})
    logged = [(r["load"]["log_mb_per_10k"], r) for r in results
              if r["server"] == "smserve" and r["load"].get("log_mb_per_10k") is not None]
    if logged:
        worst, cell = max(logged, key=lambda item: item[0])
        peer = [r["load"]["log_mb_per_10k"] for r in results if r["server"] == "peer" and "log_mb_per_10k" in r["load"]]
        checks.append({"name": "peers.md §5: log volume <= %.1f MB per 10k requests (access log on)" % LOG_MB_PER_10K_MAX,
                       "ok": worst <= LOG_MB_PER_10K_MAX,
                       "detail": "smserve at most %s MB (%s w=%d c=%d); peer %s MB" % (
                           fmt(worst, 3), cell["model"], cell["workers"], cell["connections"],
                           "-".join(fmt(v, 3) for v in (min(peer), max(peer))) if peer else "-")})
    for r in results:
        if r["load"]["errors"]:
            checks.append({"name": "no errors: %s %s w=%d c=%d" % (r["server"], r["model"], r["workers"], r["connections"]),
                           "ok": False, "detail": json.dumps(r["load"]["error_detail"])})
    return checks


def versions():
    info = {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
            "platform": platform.platform()}
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu_model"] = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), None)
    except OSError:
        pass
    info["wrk"] = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout.split("\n")[0].strip()
    info["java"] = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr.split("\n")[0].strip() \
        if shutil.which("java") else None
    for name, venv in (("peer_venv", PEER_VENV), ("smserve_venv", SMSERVE_VENV)):
        pip = os.path.join(venv, "bin", "pip")
        if os.path.exists(pip):
            frz = subprocess.run([pip, "freeze", "--disable-pip-version-check"], capture_output=True, text=True).stdout
            keep = ("sagemaker", "multi-model", "torch==", "numpy==", "uvicorn", "uvloop", "httptools", "orjson",
                    "smserve", "setuptools", "gunicorn", "starlette")
            info[name] = [l for l in frz.splitlines() if l.lower().startswith(keep) or "smserve" in l]
    try:
        info["git_commit"] = run_cmd(["git", "rev-parse", "HEAD"], cwd=ROOT).strip()
    except Exception:  # noqa: BLE001 - no commit yet
        info["git_commit"] = None
    return info


# ---------------------------------------------------------------- main

def main():
    duration = int(os.environ.get("BENCH_DURATION", "10"))
    warmup = int(os.environ.get("BENCH_WARMUP", "2"))
    servers = envlist("BENCH_SERVERS", "peer,smserve")
    models = envlist("BENCH_MODELS", "noop,mlp")
    workers_l = [int(x) for x in envlist("BENCH_WORKERS", "1,2")]
    conns_l = [int(x) for x in envlist("BENCH_CONNECTIONS", "1,8")]
    ensure_setup(servers)
    tmp = tempfile.mkdtemp(prefix="smserve-bench-")
    started = datetime.datetime.now(datetime.timezone.utc)
    results, predict, failures = [], {}, []
    try:
        dirs = build_models(tmp)
        for srv in servers:
            for m in models:
                predict[(srv, m)] = predict_time(srv, m, dirs[m])
                log("predict %s/%s: p50 %.2f us" % (srv, m, predict[(srv, m)]["p50_us"]))
        n = 0
        for m in models:
            for w in workers_l:
                for c in conns_l:
                    for srv in servers:
                        n += 1
                        port = free_port()
                        run_dir = os.path.join(tmp, "runs", "%02d-%s-%s-w%d-c%d" % (n, srv, m, w, c))
                        log("[%s] %s model=%s workers=%d connections=%d port=%d" % (
                            time.strftime("%H:%M:%S"), srv, m, w, c, port))
                        s = Server(srv, m, dirs[m], w, port, run_dir)
                        try:
                            ping_s, ready_s = s.wait_ready(MODELS[m]["body"], MODELS[m]["expected"])
                            pids = session_pids(s.sid)
                            procs = [cmdline(p) for p in pids]
                            binds = listening_addrs(pids)
                            bad = [a for a in binds if not a.startswith(("127.0.0.1:", "[::ffff:127.0.0.1]:"))]
                            if bad:
                                raise RuntimeError("%s listens beyond loopback: %s" % (srv, bad))
                            if warmup:
                                wrk(s.url(""), c, warmup, MODELS[m]["body"])
                            watch = CpuWatch(session_pids(s.sid))
                            logged_before = dir_bytes(run_dir)
                            load = summarize(wrk(s.url(""), c, duration, MODELS[m]["body"]))
                            load["cpu"] = watch.stop()
                            time.sleep(1.0)  # both servers buffer log lines for well under a second
                            load["log_mb_per_10k"] = round((dir_bytes(run_dir) - logged_before) / 1e6
                                                           * 10_000 / max(load["requests"], 1), 3)
                            rss = rss_mb(session_pids(s.sid))
                        except Exception as e:  # noqa: BLE001 - record the cell, go on with the next one
                            keep_log(s, started, "failed")
                            stop = s.stop()
                            failures.append({"server": srv, "model": m, "workers": w, "connections": c,
                                             "error": str(e), "stop": stop})
                            log("    FAILED: %s" % e)
                            continue
                        stop = s.stop()
                        if load["errors"]:
                            keep_log(s, started, "errors")
                        pt = predict[(srv, m)]["p50_us"] / 1000
                        r = {"server": srv, "model": m, "workers": w, "connections": c, "port": port,
                             "ping_s": round(ping_s, 3), "ready_s": round(ready_s, 3), "listen": binds,
                             "processes": procs,
                             "load": load, "predict_p50_ms": round(pt, 4),
                             "overhead_p50_ms": round(load["p50_ms"] - pt, 3) if c == 1 else None,
                             "rss_mb": round(rss, 1), "stop": stop}
                        results.append(r)
                        log("    %.0f req/s  p50 %.2f ms  p99 %.2f ms  errors %d  (ready %.2fs, RSS %.0f MB, left %d; "
                            "CPU%% server %.0f wrk %.0f other %.0f)" % (
                                load["rps"], load["p50_ms"], load["p99_ms"], load["errors"], ready_s, rss,
                                len(stop["leftover_pids"]), load["cpu"]["server_cpu_pct"], load["cpu"]["wrk_cpu_pct"],
                                load["cpu"]["other_cpu_pct"]))
    finally:
        if os.environ.get("BENCH_KEEP_TMP") != "1":
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            log("kept %s" % tmp)

    checks = evaluate(results)
    for f in failures:
        checks.append({"name": "cell ran: %s %s w=%d c=%d" % (f["server"], f["model"], f["workers"], f["connections"]),
                       "ok": False, "detail": f["error"][:300]})
    table = report(results, predict, checks)
    header = ("smserve benchmark %s, wrk -t1, %ds after %ds warm-up per cell, POST /invocations on 127.0.0.1\n"
              "peer = %s\n" % (started.strftime("%Y-%m-%d %H:%M UTC"), duration, warmup, PEER_DESCRIPTION))
    print(header)
    print(table)
    out_dir = os.path.join(BENCH, "results")
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, started.strftime("%Y-%m-%dT%H%M%SZ") + ".json")
    with open(path, "w") as f:
        json.dump({"started": started.isoformat(), "duration_s": duration, "warmup_s": warmup,
                   "method": "wrk -t1 closed loop, one server at a time, loopback; overhead = e2e p50 (c=1) - predict p50",
                   "models": {k: {"body": v["body"], "desc": v["desc"]} for k, v in MODELS.items() if k in models},
                   "environment": versions(),
                   "predict": [{"server": k[0], "model": k[1], **v} for k, v in predict.items()],
                   "results": results, "failures": failures, "checks": checks, "table_markdown": table}, f, indent=1)
    print("\nresults: %s" % os.path.relpath(path, ROOT))
    if os.environ.get("BENCH_STRICT") == "1" and any(c["ok"] is False for c in checks):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
