"""Run once after the Neo lock is installed into a venv (the image's deps stage, `make`'s host venv), before
anything imports dlr: writes DLR's telemetry switch off where the dlr package reads it (neo.md §7.7). The
first `import dlr` without that file would post a usage record and print a notice; at run time the root
filesystem may be read-only, so the file must exist before."""

import importlib.util
import json
from pathlib import Path

spec = importlib.util.find_spec("dlr")  # locates the package without importing it
if spec is None or not spec.submodule_search_locations:
    raise SystemExit("venv-setup: the dlr package is not installed")
path = Path(list(spec.submodule_search_locations)[0]) / "counter" / "ccm_config.json"
path.write_text(json.dumps({"enable_phone_home": False, "enable_device_info": False}))
print(f"venv-setup: DLR telemetry off ({path})")
