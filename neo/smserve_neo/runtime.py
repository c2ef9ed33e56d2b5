"""The DLR runtime in a worker (neo.md §7): which libdlr this process uses, loading with DLR's stderr
captured so that every failure says why, one DLRModel per thread, and DLR's input errors as client errors.

A process only ever loads one libdlr build: two builds in one process crash at the first run (§7.5).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from smserve.errors import ServingError, StartupError

from . import telemetry

log = logging.getLogger("smserve.neo")

ERRORS_DIR = Path("/opt/ml/errors")


class ClientError(ServingError):
    """AWS's Neo handlers answer 400 with a text that starts `ClientError:` (neo.md §4)."""

    status, error_type = 400, "ClientError"

    def __init__(self, message: str):
        super().__init__(message if message.startswith("ClientError:") else f"ClientError: {message}")


def default_library() -> Path:
    """The image's libdlr (the dlr==1.6.0 wheel installs it at <prefix>/dlr/libdlr.so)."""
    from dlr.libpath import find_lib_path

    return Path(find_lib_path(None, use_default_dlr=True))


def choose_library(own: Path | None, use_default: bool, routed: Path | None, warn: Callable[[str], None]) -> Path:
    """The libdlr this worker loads: a Treelite-ABI route decided at startup, else the model dir's own library
    (AWS's default) unless SMSERVE_NEO_USE_DEFAULT_DLR=true, else the image's. A model-dir library that cannot
    be loaded (e.g. built against TensorRT, which the image lacks) falls back to the image's with a warning."""
    if routed is not None:
        return routed
    if own is not None and not use_default:
        try:
            ctypes.CDLL(str(own))
        except OSError as exc:
            fallback = default_library()
            warn(f"{own} cannot be loaded ({exc}); using the image's DLR library {fallback} instead. Remove it "
                 f"from the model, or set SMSERVE_NEO_USE_DEFAULT_DLR=true to silence this")
            return fallback
        return own
    return default_library()


def bind_library(path: Path) -> None:
    """Make every DLRModel of this process use `path` (dlr looks the library up per model otherwise)."""
    import dlr.dlr_model

    dlr.dlr_model.find_lib_path = lambda *args, **kwargs: str(path)


@contextlib.contextmanager
def captured_stderr() -> Iterator[Callable[[], str]]:
    """DLR prints the cause of a load failure on file descriptor 2 and raises an empty error (§7.1): collect
    what it prints, then pass it on to the real stderr (the container log) as well."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        text = ""
        try:
            yield lambda: text
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text = sink.read().decode("utf-8", "replace")
            if text:
                sys.stderr.write(text)
                sys.stderr.flush()


def error_log_file() -> str | None:
    """AWS passes /opt/ml/errors/errors.log to DLR when that folder is writable."""
    return str(ERRORS_DIR / "errors.log") if ERRORS_DIR.is_dir() and os.access(ERRORS_DIR, os.W_OK) else None


def load(model_dir: str, dev_type: str, library: Path) -> Any:
    telemetry.disable()
    from dlr import DLRModel

    output: list[str] = []
    try:
        with captured_stderr() as printed:
            try:
                return DLRModel(model_dir, dev_type, 0, error_log_file())
            finally:
                output.append(printed())
    except Exception as exc:  # DLRError, ValueError, OSError: all mean this model cannot be served here
        printed_text = "".join(output).strip()
        message = str(exc).strip() or "(DLR gave no message)"
        detail = f"; DLR printed: {printed_text}" if printed_text and printed_text not in message else ""
        raise StartupError(f"DLR could not load the model in {model_dir} on {dev_type} with {library}: {message}{detail}") \
            from None


class Runtime:
    """One model directory served by one worker: a DLRModel per predict thread (DLR's run is stateful)."""

    def __init__(self, model_dir: str, dev_type: str, library: Path):
        self.model_dir, self.dev_type, self.library = model_dir, dev_type, library
        self._local = threading.local()
        self.primary = load(model_dir, dev_type, library)
        self._local.model = self.primary
        self.input_names: list[str] = list(self.primary.get_input_names())
        self.output_names: list[str] = list(self.primary.get_output_names())
        log.info("DLR %s loaded %s on %s: inputs %s, library %s", self.version(), model_dir, dev_type,
                 self.input_names, library)

    def version(self) -> str:
        try:
            return self.primary.get_version()
        except Exception:  # noqa: BLE001 - older libraries lack GetDLRVersion
            return "(unknown version)"

    def _model(self) -> Any:
        model = getattr(self._local, "model", None)
        if model is None:
            model = self._local.model = load(self.model_dir, self.dev_type, self.library)
        return model

    def run(self, data: Any) -> list[np.ndarray]:
        """DLR's complaints about the inputs (unknown name, element count, dtype) are the client's (§4.3)."""
        from dlr.dlr_model import DLRError

        try:
            return self._model().run(data)
        except (DLRError, ValueError, TypeError) as exc:
            text = str(exc).split("\nStack trace:", 1)[0].strip()  # TVM appends its C++ backtrace
            raise ClientError(text or f"DLR refused the input ({type(exc).__name__})") from None
