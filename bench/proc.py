"""Process and machine accounting shared by the benchmark drivers (bench/run.py, bench/layers/run.py,
bench/run_tensorflow.py): free loopback ports, a session's processes, CPU time from /proc, and the timing loop of
the in-process model-call helpers. Standard library only: the drivers run under the host's python3."""
import os
import random
import socket
import statistics
import sys
import time

TICK = os.sysconf("SC_CLK_TCK")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def envlist(name, default):
    return [x.strip() for x in os.environ.get(name, default).split(",") if x.strip()]


def free_port():
    """A free 127.0.0.1 port below 32767: MMS 1.1.11 rejects higher ports ("Invalid port number"),
    so the kernel's ephemeral range (32768+) cannot be used; the same rule applies to every server."""
    return free_port_block(1)


def free_port_block(size):
    """The first of `size` consecutive free 127.0.0.1 ports in 20000-32700 (the free_port rule): the TensorFlow
    family's backends take theirs from SAGEMAKER_SAFE_PORT_RANGE, which must not collide with anything running."""
    for _ in range(200):
        low = random.randrange(20000, 32700 - size)
        if all(_bindable(port) for port in range(low, low + size)):
            return low
    raise RuntimeError("no %d free consecutive ports in 20000-32700" % size)


def _bindable(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _stat_fields(pid):
    """/proc/<pid>/stat after the command name: [0] state, [3] session id, [11] utime, [12] stime."""
    with open("/proc/%s/stat" % pid) as f:
        return f.read().rsplit(")", 1)[1].split()


def session_pids(sid):
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            fields = _stat_fields(d)
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            pids.append(int(d))
    return pids


def machine_busy_s():
    """(process-context busy, irq + softirq) CPU seconds of the whole machine, from /proc/stat. Loopback TCP
    work runs largely in softirq, charged to no process, so it is kept apart from "other"."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, irq, softirq = v[0], v[1], v[2], v[5], v[6]
    return (user + nice + system) / TICK, (irq + softirq) / TICK


def procs_cpu_s(pids):
    total = 0
    for p in pids:
        try:
            fields = _stat_fields(p)
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total / TICK


def time_calls(call, n):
    """p50/p90/p99/mean (us) of `call()` over n calls after min(n, 2000) warm-up calls (first-call tracing, caches):
    the in-process floor the servers' end-to-end latency is compared with."""
    for _ in range(min(n, 2000)):
        call()
    samples = []
    pc = time.perf_counter
    for _ in range(n):
        t0 = pc()
        call()
        samples.append((pc() - t0) * 1e6)
    samples.sort()
    q = lambda p: samples[min(len(samples) - 1, int(p * len(samples)))]  # noqa: E731
    return {"p50_us": q(0.5), "p90_us": q(0.9), "p99_us": q(0.99), "mean_us": statistics.mean(samples), "n": n}


def remove_mms_leftovers():
    """MMS leaves its pid file and worker sockets in /tmp, and a later MMS refuses to start beside the pid file:
    remove them once no MMS runs any more."""
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/cmdline" % d, "rb") as f:
                    if b"com.amazonaws.ml.mms.ModelServer" in f.read():
                        return
            except OSError:
                continue
    for name in os.listdir("/tmp"):
        if name.startswith((".mms.sock", ".model_server.pid")):
            try:
                os.unlink(os.path.join("/tmp", name))
            except OSError:
                pass
