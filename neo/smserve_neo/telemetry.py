"""DLR's usage telemetry, kept off (neo.md §7.7).

The `dlr` package posts usage records to api.neo-dlr.amazonaws.com and prints a notice on first use unless
`dlr/counter/ccm_config.json` disables it. The image build writes that file (`python -m smserve_neo.telemetry`);
at run time `disable()` only switches the feature off in the process, so a read-only root filesystem works.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import sys
from pathlib import Path

CONFIG = {"enable_phone_home": False, "enable_device_info": False}

log = logging.getLogger("smserve.neo")


def config_path() -> Path | None:
    """Where the dlr package reads its telemetry switch, found without importing dlr."""
    spec = importlib.util.find_spec("dlr")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "counter" / "ccm_config.json"


def is_disabled_on_disk() -> bool:
    path = config_path()
    try:
        return path is not None and json.loads(path.read_text()).get("enable_phone_home") is False
    except (OSError, ValueError, AttributeError):
        return False


def write_config() -> Path:
    """Build time (image, host venv): the file that keeps every later `import dlr` quiet and offline."""
    path = config_path()
    if path is None:
        raise SystemExit("the dlr package is not installed here")
    path.write_text(json.dumps(CONFIG))
    return path


def disable() -> None:
    """Before the first DLRModel: no record is sent and no notice printed, whatever the file says. Importing
    dlr's counter module with the file missing would switch the feature on (and try to write the file), so a
    missing file is only logged; the class switch below still stops every send."""
    if not is_disabled_on_disk():
        log.warning("DLR telemetry is not disabled in %s (the image build writes it); it is switched off for "
                    "this process only", config_path())
    try:
        from dlr.counter import phone_home
    except ImportError:  # a dlr without telemetry
        return
    phone_home.MGR = None  # what DLRModel.__init__'s decorator sends through
    PhoneHome = phone_home.PhoneHome
    PhoneHome.instance = None
    PhoneHome._enable_feature = False
    PhoneHome.should_enable = staticmethod(lambda: False)  # dlr asks this before every send


if __name__ == "__main__":
    print(f"wrote {write_config()}", file=sys.stderr)
