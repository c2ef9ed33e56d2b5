"""The zygote (smserve/zygote.py) on its own: it forks workers that become the caller's children, and it refuses
to fork when its imports left a thread running (fork safety). Each case runs in a fresh interpreter, since becoming
a child subreaper changes the process for good."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

DRIVER = textwrap.dedent('''
    import json, os, sys, time
    sys.path.insert(0, sys.argv[1])
    from smserve import zygote

    out = {"subreaper": zygote.become_subreaper()}

    def become_worker(slot, accept_at_once):
        with open(os.path.join(sys.argv[1], f"worker-{slot}"), "w") as f:
            json.dump({"pid": os.getpid(), "ppid": os.getppid(), "accept": accept_at_once,
                       "threaded": "threaded_import" in sys.modules}, f)
        os._exit(7)

    z = zygote.Zygote.start(tuple(sys.argv[2].split(",")), become_worker)
    try:
        pids = [z.spawn(slot, slot == 0, lambda: False) for slot in range(2)]
        out["pids"] = pids
        out["exits"] = {}
        while len(out["exits"]) < len(pids):  # the workers become this process's children: waitpid sees them
            pid, status = os.waitpid(-1, 0)
            out["exits"][str(pid)] = os.waitstatus_to_exitcode(status)
    except OSError as exc:
        out["error"] = str(exc)
    out["zygote_alive"] = os.path.exists(f"/proc/{z.pid}") and open(f"/proc/{z.pid}/comm").read().strip()
    z.stop()
    print(json.dumps(out))
''')

THREADED_IMPORT = '''
import threading
import time

threading.Thread(target=time.sleep, args=(60,), daemon=True, name="left-behind").start()
'''


def _drive(tmp_path: Path, modules: str) -> dict:
    repo = Path(__file__).resolve().parents[2]
    (tmp_path / "threaded_import.py").write_text(THREADED_IMPORT)
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    result = subprocess.run([sys.executable, str(script), str(tmp_path), modules], capture_output=True, text=True,
                            timeout=60, cwd=repo, env={"PYTHONPATH": str(repo), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_zygote_workers_are_adopted_by_the_caller(tmp_path):
    """Workers forked by the zygote's middle process are re-parented to the caller (a child subreaper): it gets
    their pids, their exit statuses through waitpid, and they inherit what the zygote imported."""
    out = _drive(tmp_path, "json,smserve.errors")
    assert out["subreaper"] is True
    assert out["zygote_alive"] == "smserve-zygote"
    for slot, pid in enumerate(out["pids"]):
        report = json.loads((tmp_path / f"worker-{slot}").read_text())
        assert report["pid"] == pid
        assert report["accept"] is (slot == 0)
        assert out["exits"][str(pid)] == 7


def test_zygote_refuses_to_fork_after_an_import_that_starts_a_thread(tmp_path):
    """A module that leaves a thread running makes forking unsafe: the zygote answers with the thread names
    instead of a pid, and no worker is forked."""
    out = _drive(tmp_path, "threaded_import")
    assert "pids" not in out
    assert "2 threads" in out["error"] and "unsafe" in out["error"]
    assert not (tmp_path / "worker-0").exists()
