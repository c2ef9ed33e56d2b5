"""DLR's usage telemetry, kept off (neo.md §7.7).

The `dlr` package posts usage records to api.neo-dlr.amazonaws.com and prints a notice on first use unless
`dlr/counter/ccm_config.json` disables it. The image build writes that file (neo/venv-setup.py); at run time
`disable()` only switches the feature off in the process, so a read-only root filesystem works.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path

from smserve.errors import StartupError

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


def disable() -> None:
    """Before the first DLRModel. Importing dlr's counter module without the switch on disk posts a record,
    prints the notice and writes the file as "enabled", so the switch must be on disk first: a venv that lacks
    it (one not made by the image build or `make`) gets it written now, and a read-only one stops startup.
    Then the feature is also switched off in the process, whatever the file says."""
    if not is_disabled_on_disk():
        path = config_path()
        if path is None:
            return  # no dlr package: the load reports it
        try:
            path.write_text(json.dumps({"enable_phone_home": False, "enable_device_info": False}))
        except OSError as exc:
            raise StartupError(f"DLR telemetry is not disabled in {path} and it cannot be written ({exc}): importing "
                               f"dlr would contact api.neo-dlr.amazonaws.com. Write "
                               f'{{"enable_phone_home": false}} there when building the environment') from None
        log.warning("DLR telemetry was not disabled in %s (the image build writes it): written now", path)
    from dlr.counter import phone_home

    phone_home.MGR = None  # what DLRModel.__init__'s decorator sends through
    phone_home.PhoneHome.instance = None
    phone_home.PhoneHome._enable_feature = False
    phone_home.PhoneHome.should_enable = staticmethod(lambda: False)  # asked again before every send
