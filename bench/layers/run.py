#!/usr/bin/env python3
"""Request-layer comparison for issue 2 item 4: `make bench-layers` (docs/request-layer.md).

Every layer serves the same two routes with the same handler (bench/layers/apps/work.py: parse the JSON
body, double the list, dump JSON): POST /invocations and GET /ping. For each round x workers x
connections x layer: start the layer on a free 127.0.0.1 port in its own session, wait until /ping is 200
and one invocation answers [2, 5.0, 6], warm up with wrk, measure with wrk (1 thread, closed loop,
bench/wrk/post.lua, body [1, 2.5, 3]), stop it (SIGTERM, then the whole session is killed and checked
empty). Layers of one (workers, connections) cell run back to back so that machine drift hits them alike.

At connections=1 the same server then gets the /ping isolation probe: 2 x workers requests that block for
BENCH_PROBE_SLEEP seconds in the handler (time.sleep, like a long predict_fn) are sent at once, and /ping
is polled meanwhile; the probe records the /ping latencies (the issue asks p99 <= 100 ms).

Environment (all optional):
  BENCH_DURATION=8   seconds measured per cell      BENCH_WARMUP=2   seconds of warm-up per cell
  BENCH_LAYERS=a,b   subset of the layers below     BENCH_WORKERS=1,2     BENCH_CONNECTIONS=1,8
  BENCH_ROUNDS=1     repeat the whole matrix; the table shows the median round per cell
  BENCH_PROBE_SLEEP=2  seconds each probe request blocks (0 disables the probe)
  BENCH_MAX_LOAD=x   before each cell wait (up to BENCH_LOAD_WAIT=120 s) until the 1-min load average <= x
  BENCH_NO_SETUP=1   do not create missing venvs
Only loopback traffic; every step is bounded in time.
"""
import datetime
import hashlib
import http.client
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "bench"))
from proc import envlist, free_port, log, machine_busy_s, procs_cpu_s, session_pids  # noqa: E402
APPS = os.path.join(HERE, "apps")
REQS = os.path.join(HERE, "requirements.txt")
LUA = os.path.join(ROOT, "bench", "wrk", "post.lua")
RESULTS = os.path.join(ROOT, "bench", "results")
VENV = os.path.join(ROOT, ".venv", "bench-layers")
SM_VENV = os.path.join(ROOT, ".venv", "pytorch")
BODY = "[1, 2.5, 3]"
EXPECTED = [2, 5.0, 6]
START_TIMEOUT = 120.0
STOP_TIMEOUT = 40.0


# ---------------------------------------------------------------- layers

def gunicorn(worker_class, app, extra=()):
    def cmd(port, workers):
        return [os.path.join(VENV, "bin", "gunicorn"), "--workers", str(workers), "--worker-class", worker_class,
                "--bind", "127.0.0.1:%d" % port, "--chdir", APPS, "--log-level", "warning",
                "--no-control-socket", *extra, app]
    return cmd


def uvicorn(app):
    def cmd(port, workers):
        return [os.path.join(VENV, "bin", "uvicorn"), app, "--app-dir", APPS, "--host", "127.0.0.1",
                "--port", str(port), "--workers", str(workers), "--loop", "uvloop", "--http", "httptools",
                "--no-access-log", "--log-level", "warning"]
    return cmd


def smserve(port, workers):
    return [os.path.join(SM_VENV, "bin", "smserve"), "serve", "--model-dir", SMSERVE_MODEL_DIR, "--port", str(port),
            "--host", "127.0.0.1"]


SMSERVE_MODEL_DIR = None  # set in main(): a temporary model dir with code/inference.py
SMSERVE_ENV = {"SMSERVE_FAMILY": "pytorch", "SMSERVE_SKIP_REQUIREMENTS": "true"}

# name -> (command builder, extra env, description). The order is the table's.
LAYERS = {
    "gunicorn-sync-flask": (gunicorn("sync", "flask_app:app"), {},
                            "gunicorn 27.0.1 sync worker + Flask 3.1.3 (WSGI, no keep-alive)"),
    "gunicorn-uvicorn-starlette": (gunicorn("uvicorn_worker.UvicornWorker", "starlette_app:app"), {},
                                   "gunicorn arbiter + uvicorn-worker 0.4.0 (uvloop, httptools) + Starlette, "
                                   "async endpoint"),
    "gunicorn-asgi-starlette": (gunicorn("asgi", "starlette_app:app"), {},
                                "gunicorn 27 native ASGI worker (uvloop, gunicorn_h1c parser) + Starlette, "
                                "async endpoint"),
    "uvicorn-starlette": (uvicorn("starlette_app:app"), {},
                          "uvicorn 0.54.0 (uvloop, httptools) + Starlette 1.10.0, async endpoint"),
    "uvicorn-starlette-pool": (uvicorn("starlette_app:app_pool"), {},
                               "uvicorn + Starlette, handler on the anyio thread pool"),
    "uvicorn-raw": (uvicorn("raw_asgi:app"), {}, "uvicorn + raw ASGI, handler on the event loop"),
    "uvicorn-raw-pool": (uvicorn("raw_asgi:app_pool"), {},
                         "uvicorn + raw ASGI, handler on a 1-thread executor (smserve's hot path, bare)"),
    "gunicorn-uvicorn-raw-pool": (gunicorn("uvicorn_worker.UvicornWorker", "raw_asgi:app_pool"), {},
                                  "gunicorn arbiter + uvicorn-worker + the same raw ASGI pool app"),
    "smserve": (smserve, dict(SMSERVE_ENV),
                "smserve supervisor + uvicorn worker + smserve App, shipped defaults (access log, metrics on)"),
    "smserve-lean": (smserve, dict(SMSERVE_ENV, SMSERVE_ACCESS_LOG="false", SMSERVE_METRICS="false"),
                     "smserve with SMSERVE_ACCESS_LOG=false SMSERVE_METRICS=false"),
}


# ---------------------------------------------------------------- setup

def run_cmd(cmd, **kw):
    return subprocess.run(cmd, check=True, text=True, capture_output=True, **kw).stdout


def pick_python():
    for name in ("python3.11", "python3"):
        path = shutil.which(name)
        if path:
            return path
    return sys.executable


def ensure_venv():
    """Create or refresh .venv/bench-layers from requirements.txt (a stamp holds the file's hash)."""
    stamp = os.path.join(VENV, ".installed")
    with open(REQS, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    if os.path.exists(stamp) and open(stamp).read().strip() == digest:
        return
    if os.environ.get("BENCH_NO_SETUP") == "1":
        sys.exit(".venv/bench-layers missing or stale: run without BENCH_NO_SETUP=1")
    log("creating .venv/bench-layers from bench/layers/requirements.txt")
    if not os.path.exists(os.path.join(VENV, "bin", "python")):
        subprocess.run([pick_python(), "-m", "venv", VENV], check=True)
    subprocess.run([os.path.join(VENV, "bin", "python"), "-m", "pip", "install", "-q", "-r", REQS], check=True)
    with open(stamp, "w") as f:
        f.write(digest + "\n")


def ensure_smserve():
    if os.path.exists(os.path.join(SM_VENV, "bin", "smserve")):
        return
    if os.environ.get("BENCH_NO_SETUP") == "1":
        sys.exit(".venv/pytorch/bin/smserve missing: run `make venv-pytorch`")
    log("creating .venv/pytorch for smserve")
    subprocess.run(["make", "venv-pytorch"], cwd=ROOT, check=True)


def ensure_wrk():
    if shutil.which("wrk"):
        return
    if os.environ.get("BENCH_NO_SETUP") != "1" and os.geteuid() == 0 and shutil.which("apt-get"):
        log("installing wrk (Debian package)")
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=False,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    if not shutil.which("wrk"):
        sys.exit("wrk not found: apt-get install -y wrk")


def make_smserve_model(tmp):
    """code/inference.py = apps/work.py verbatim + transform_fn, so smserve runs the identical handler."""
    model = os.path.join(tmp, "model")
    os.makedirs(os.path.join(model, "code"))
    with open(os.path.join(APPS, "work.py")) as f:
        src = f.read()
    src += ('\n\ndef model_fn(model_dir):\n    return None\n\n\n'
            'def transform_fn(model, body, content_type, accept):\n    return work(body)\n')
    with open(os.path.join(model, "code", "inference.py"), "w") as f:
        f.write(src)
    return model


# ---------------------------------------------------------------- processes

class Server:
    def __init__(self, layer, workers, run_dir):
        build, extra_env, _ = LAYERS[layer]
        self.layer, self.workers, self.port = layer, workers, free_port()
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("SMSERVE_", "SAGEMAKER_", "OMP_", "MKL_", "WEB_CONCURRENCY", "GUNICORN_"))}
        env.update(extra_env)
        env["SAGEMAKER_MODEL_SERVER_WORKERS"] = str(workers)
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        self.cmd = build(self.port, workers)
        self.log_path = os.path.join(run_dir, "%s-w%d-%d.log" % (layer, workers, self.port))
        self.log_file = open(self.log_path, "wb")
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(self.cmd, cwd=run_dir, env=env, stdout=self.log_file, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        self.sid = self.proc.pid

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def wait_ready(self):
        deadline = time.monotonic() + START_TIMEOUT
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("%s exited with %s; log: %s" % (self.layer, self.proc.returncode, self.log_path))
            try:
                with urllib.request.urlopen(self.url("/ping"), timeout=2) as r:
                    ok = r.status == 200
                if ok:
                    req = urllib.request.Request(self.url("/invocations"), data=BODY.encode(), method="POST",
                                                 headers={"Content-Type": "application/json"})
                    with urllib.request.urlopen(req, timeout=10) as r:
                        got = json.loads(r.read())
                    if got != EXPECTED:
                        raise RuntimeError("%s answered %r, expected %r" % (self.layer, got, EXPECTED))
                    return time.monotonic() - self.t0
            except (urllib.error.URLError, ConnectionError, socket.timeout, json.JSONDecodeError) as e:
                last = e
            time.sleep(0.05)
        raise RuntimeError("%s not ready after %.0f s (%s); log: %s" % (self.layer, START_TIMEOUT, last,
                                                                        self.log_path))

    def stop(self):
        """SIGTERM the server, wait, then kill whatever is left in its session and check that nothing is."""
        t0 = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        stop_s = time.monotonic() - t0
        time.sleep(0.3)
        leftover = session_pids(self.sid)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for p in session_pids(self.sid):
                try:
                    os.kill(p, sig)
                except ProcessLookupError:
                    pass
            end = time.monotonic() + 5
            while session_pids(self.sid) and time.monotonic() < end:
                time.sleep(0.05)
        if session_pids(self.sid):
            raise RuntimeError("processes of %s survive SIGKILL: %s" % (self.layer, session_pids(self.sid)))
        self.log_file.close()
        return {"exit_code": code, "stop_s": round(stop_s, 3), "leftover_pids": leftover}


# ---------------------------------------------------------------- load

def wrk(url, connections, duration, timeout_s=10):
    env = dict(os.environ, BENCH_BODY=BODY, BENCH_CONTENT_TYPE="application/json", BENCH_PATH="/invocations")
    cmd = ["wrk", "-t1", "-c%d" % connections, "-d%ds" % duration, "--timeout", "%ds" % timeout_s, "-s", LUA,
           url + "/invocations"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=duration + timeout_s + 30)
    for line in out.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            return json.loads(line[len("BENCH_JSON "):])
    raise RuntimeError("wrk gave no summary: %s %s" % (out.stdout, out.stderr))


def measure(srv, connections, duration):
    """wrk plus how busy the rest of the machine was meanwhile (noise: other engineers' tests)."""
    pids = session_pids(srv.sid)
    t0, (busy0, irq0), srv0 = time.monotonic(), machine_busy_s(), procs_cpu_s(pids)
    import resource

    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    w = wrk(srv.url(""), connections, duration)
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.monotonic() - t0
    busy1, irq1 = machine_busy_s()
    busy, irq = busy1 - busy0, irq1 - irq0
    server = procs_cpu_s(pids) - srv0
    wrk_cpu = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
    lat, secs = w["latency_us"], w["duration_us"] / 1e6
    ncpu = os.cpu_count() or 1
    return {"rps": round(w["requests"] / secs, 1), "requests": w["requests"],
            "p50_ms": round(lat["p50"] / 1000, 3), "p90_ms": round(lat["p90"] / 1000, 3),
            "p99_ms": round(lat["p99"] / 1000, 3), "max_ms": round(lat["max"] / 1000, 3),
            "errors": sum(w["errors"].values()), "error_detail": w["errors"],
            "server_cpu_pct": round(100 * server / wall, 1), "wrk_cpu_pct": round(100 * wrk_cpu / wall, 1),
            "other_cpu_pct": round(100 * max(0.0, busy - server - wrk_cpu) / wall, 1),
            "softirq_cpu_pct": round(100 * irq / wall, 1),
            "machine_busy_pct": round(100 * (busy + irq) / (wall * ncpu), 1)}


def post(port, body, timeout):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", "/invocations", body=body, headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        r.read()
        return r.status
    finally:
        conn.close()


def ping_ms(port, timeout):
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/ping")
        r = conn.getresponse()
        r.read()
        status = r.status
    except (OSError, http.client.HTTPException):
        status = None
    finally:
        conn.close()
    return status, (time.perf_counter() - t0) * 1000


def probe(srv, sleep_s):
    """2 x workers blocking requests in flight; /ping polled (new connection each time) while they run."""
    n = 2 * srv.workers
    timeout = n * sleep_s + 10
    statuses = []
    threads = [threading.Thread(target=lambda: statuses.append(_safe_post(srv.port, sleep_s, timeout)))
               for _ in range(n)]
    for t in threads:
        t.start()
    time.sleep(min(0.3, sleep_s / 4))
    pings = []
    end = time.monotonic() + max(0.2, sleep_s - 0.6)
    while time.monotonic() < end or not pings:
        status, ms = ping_ms(srv.port, timeout)
        pings.append((status, ms))
        time.sleep(0.02)
    for t in threads:
        t.join(timeout)
    lat = sorted(ms for _, ms in pings)
    return {"slow_requests": n, "sleep_s": sleep_s, "pings": len(pings),
            "ping_ok": sum(1 for s, _ in pings if s == 200),
            "ping_p50_ms": round(lat[len(lat) // 2], 2), "ping_max_ms": round(lat[-1], 2),
            "slow_statuses": sorted(str(s) for s in statuses)}


def _safe_post(port, sleep_s, timeout):
    try:
        return post(port, json.dumps({"sleep_s": sleep_s}), timeout)
    except (OSError, http.client.HTTPException) as e:
        return type(e).__name__


def wait_load(max_load, limit_s):
    end = time.monotonic() + limit_s
    while os.getloadavg()[0] > max_load and time.monotonic() < end:
        time.sleep(5)


# ---------------------------------------------------------------- report

def fmt(v, nd=2):
    return "-" if v is None else ("%.*f" % (nd, v))


def median_cell(cells):
    """The round whose req/s is the median (its latencies go with it, not mixed across rounds)."""
    ok = sorted((c for c in cells if c.get("rps") is not None), key=lambda c: c["rps"])
    return ok[(len(ok) - 1) // 2] if ok else cells[0]


def report(results, layers, workers, conns, rounds):
    lines = []
    head = "| layer | w | c | req/s | p50 ms | p99 ms | errors | other CPU % | load1 |" + \
        (" req/s range |" if rounds > 1 else "")
    lines += [head, "|" + "---|" * (head.count("|") - 1)]
    for layer in layers:
        for w in workers:
            for c in conns:
                cells = [r for r in results if r["layer"] == layer and r["workers"] == w and r["connections"] == c]
                if not cells:
                    continue
                m = median_cell(cells)
                if m.get("error"):
                    row = "| %s | %d | %d | failed: %s |" % (layer, w, c, m["error"][:80])
                else:
                    row = "| %s | %d | %d | %.0f | %s | %s | %d | %.0f | %.2f |" % (
                        layer, w, c, m["rps"], fmt(m["p50_ms"]), fmt(m["p99_ms"]), m["errors"],
                        m["other_cpu_pct"], m["load1"])
                    if rounds > 1:
                        rps = [x["rps"] for x in cells if x.get("rps") is not None]
                        row += " %.0f–%.0f |" % (min(rps), max(rps))
                lines.append(row)
    lines.append("")
    lines.append("/ping while 2 x w requests block in the handler (BENCH_PROBE_SLEEP s each):")
    lines.append("| layer | w | pings | 200s | /ping p50 ms | /ping max ms |")
    lines.append("|---|---|---|---|---|---|")
    for layer in layers:
        for w in workers:
            ps = [r["probe"] for r in results if r["layer"] == layer and r["workers"] == w and r.get("probe")]
            if ps:
                p = max(ps, key=lambda x: x["ping_max_ms"])  # the worst round
                lines.append("| %s | %d | %d | %d | %s | %s |" % (layer, w, p["pings"], p["ping_ok"],
                                                                 fmt(p["ping_p50_ms"], 1), fmt(p["ping_max_ms"], 1)))
    return "\n".join(lines)


def versions():
    info = {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
            "kernel": platform.release()}
    try:
        info["wrk"] = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    except OSError:
        pass
    try:
        info["bench_layers_venv"] = run_cmd([os.path.join(VENV, "bin", "python"), "-m", "pip", "freeze"]).split()
    except (OSError, subprocess.CalledProcessError):
        pass
    try:
        info["smserve"] = run_cmd([os.path.join(SM_VENV, "bin", "smserve"), "--version"]).strip()
        info["smserve_commit"] = run_cmd(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT).strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return info


def main():
    global SMSERVE_MODEL_DIR
    layers = envlist("BENCH_LAYERS", ",".join(LAYERS))
    unknown = [x for x in layers if x not in LAYERS]
    if unknown:
        sys.exit("unknown layer(s) %s; known: %s" % (", ".join(unknown), ", ".join(LAYERS)))
    workers = [int(x) for x in envlist("BENCH_WORKERS", "1,2")]
    conns = [int(x) for x in envlist("BENCH_CONNECTIONS", "1,8")]
    duration = int(os.environ.get("BENCH_DURATION", "8"))
    warmup = int(os.environ.get("BENCH_WARMUP", "2"))
    rounds = int(os.environ.get("BENCH_ROUNDS", "1"))
    probe_sleep = float(os.environ.get("BENCH_PROBE_SLEEP", "2"))
    max_load = float(os.environ["BENCH_MAX_LOAD"]) if os.environ.get("BENCH_MAX_LOAD") else None
    load_wait = float(os.environ.get("BENCH_LOAD_WAIT", "120"))

    # SIGTERM (a CI timeout, `kill`): leave through the finally blocks so the running server is stopped too
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    ensure_wrk()
    if any(not x.startswith("smserve") for x in layers):
        ensure_venv()
    if any(x.startswith("smserve") for x in layers):
        ensure_smserve()

    started = datetime.datetime.now(datetime.timezone.utc)
    tmp = tempfile.mkdtemp(prefix="bench-layers-")
    SMSERVE_MODEL_DIR = make_smserve_model(tmp)
    results = []
    load_start = os.getloadavg()
    log("bench-layers: %d layers x w %s x c %s x %d round(s), %d s + %d s warm-up per cell; load %s" % (
        len(layers), workers, conns, rounds, duration, warmup, " ".join("%.2f" % x for x in load_start)))
    try:
        for rnd in range(rounds):
            for w in workers:
                for c in conns:
                    order = layers[rnd % len(layers):] + layers[:rnd % len(layers)]  # rotate the start per round
                    for layer in order:
                        if max_load is not None:
                            wait_load(max_load, load_wait)
                        cell = {"round": rnd, "layer": layer, "workers": w, "connections": c,
                                "load1": round(os.getloadavg()[0], 2)}
                        srv = None
                        try:
                            srv = Server(layer, w, tmp)
                            cell["ready_s"] = round(srv.wait_ready(), 2)
                            if warmup:
                                wrk(srv.url(""), c, warmup)
                            cell.update(measure(srv, c, duration))
                            if c == min(conns) and probe_sleep > 0:
                                cell["probe"] = probe(srv, probe_sleep)
                        except Exception as e:  # noqa: BLE001 - a failed cell is reported, the run goes on
                            cell["error"] = "%s: %s" % (type(e).__name__, e)
                        finally:
                            if srv is not None:
                                cell["stop"] = srv.stop()
                                if cell["stop"]["leftover_pids"]:
                                    cell["leftover_after_sigterm"] = True
                        results.append(cell)
                        if cell.get("error"):
                            log("  %-27s w=%d c=%d  FAILED %s" % (layer, w, c, cell["error"]))
                            if srv is not None:
                                keep = os.path.join(RESULTS, started.strftime("layers-%Y-%m-%dT%H%M%SZ-logs"))
                                os.makedirs(keep, exist_ok=True)
                                shutil.copy(srv.log_path, keep)
                        else:
                            pr = cell.get("probe")
                            log("  %-27s w=%d c=%d  %6.0f req/s  p50 %6.2f  p99 %6.2f ms  err %d  other CPU %3.0f%%%s" % (
                                layer, w, c, cell["rps"], cell["p50_ms"], cell["p99_ms"], cell["errors"],
                                cell["other_cpu_pct"],
                                "  /ping max %.0f ms" % pr["ping_max_ms"] if pr else ""))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    finished = datetime.datetime.now(datetime.timezone.utc)
    load_end = os.getloadavg()
    table = report(results, layers, workers, conns, rounds)
    print("\nbench-layers %s, wrk -t1, %d s after %d s warm-up per cell, POST %s to /invocations on 127.0.0.1, "
          "%d round(s)%s; load average at start %.2f, at end %.2f\n" % (
              started.strftime("%Y-%m-%d %H:%M UTC"), duration, warmup, BODY, rounds,
              " (median round shown)" if rounds > 1 else "", load_start[0], load_end[0]))
    print(table)
    os.makedirs(RESULTS, exist_ok=True)
    out = os.path.join(RESULTS, started.strftime("layers-%Y-%m-%dT%H%M%SZ.json"))
    with open(out, "w") as f:
        json.dump({"started": started.isoformat(), "finished": finished.isoformat(),
                   "method": "wrk -t1 closed loop, one server at a time, loopback, fresh server per cell",
                   "duration_s": duration, "warmup_s": warmup, "rounds": rounds, "probe_sleep_s": probe_sleep,
                   "loadavg_start": load_start, "loadavg_end": load_end, "versions": versions(),
                   "layers": {k: LAYERS[k][2] for k in layers}, "results": results, "table": table}, f, indent=1)
    print("\nresults: %s" % os.path.relpath(out, ROOT))
    bad = [r for r in results if r.get("error") or r.get("stop", {}).get("leftover_pids")]
    return 1 if any(r.get("error") for r in bad) else 0


if __name__ == "__main__":
    sys.exit(main())
