"""BLISS 2.4.0's client of the "mapping" route, call by call.

`bliss/scanning/writer/external_tango_mapping.py` (ExternalTangoMappingWriter) needs a BLISS
session to run; this replays the Tango calls it makes, in its order, with its timeouts and its
error handling, so that the main test tier needs no BLISS (the real-BLISS tier runs the original).
"""
from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path

import tango
from tango import CommunicationFailed, ConnectionFailed, DevFailed, DevState

ROOT = Path(__file__).resolve().parent.parent


def bliss_find_session_writer():
    """The `find_session_writer` the BLISS tier gives BLISS (written apart from nxpar's)."""
    path = ROOT / "launch" / "bliss_env" / "blisswriter" / "app" / "register_service.py"
    spec = importlib.util.spec_from_file_location("_bliss_register_service", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.find_session_writer


class MappingClient:
    """One scan's worth of ExternalTangoMappingWriter: prepare(), check() every 3 s, finalize()."""

    CHECK_PERIOD_S = 3

    def __init__(self, session: str) -> None:
        uri = bliss_find_session_writer()(session, writer_class="BlissWriter")
        if not uri:
            raise RuntimeError("No Nexus writer registered for this session")
        self.proxy = tango.DeviceProxy(uri)
        self.scan_key = ""
        self.fault = False
        self.state_checked = False
        self.warning_index = 0
        self.logged_warnings: list[str] = []
        self.timings: dict[str, float] = {}

    # -- ExternalTangoMappingWriter._retry --------------------------------------------------------
    def _retry(self, method, fail_msg: str, timeout: float = 10, proxy_timeout: float = 3,
               raise_on_timeout: bool = False) -> None:
        t0 = time.monotonic()
        self.proxy.set_timeout_millis(int(proxy_timeout * 1000))
        first, err, cause = True, fail_msg, None
        while time.monotonic() - t0 < timeout or first:
            first = False
            try:
                if method():
                    return
            except (ConnectionFailed, CommunicationFailed) as e:
                cause, err = e, f"{fail_msg} ({e.args[0].reason}: {e.args[0].desc.strip()})"
            except DevFailed as e:
                self.fault = True
                raise RuntimeError(f"{fail_msg} (Nexus writer {e.args[0].reason}: {e.args[0].desc.strip()})") from e
            except Exception:
                self.fault = True
                raise
            time.sleep(0.1)
        if raise_on_timeout:
            raise RuntimeError(err.format(timeout=timeout)) from cause

    # -- the checks ------------------------------------------------------------------------------
    def _is_writer_on(self) -> bool:
        state = self.proxy.state()
        if state in (DevState.ON, DevState.RUNNING):
            return True
        if state in (DevState.FAULT, DevState.OFF, DevState.UNKNOWN):
            raise RuntimeError(f"Nexus writer service is in {state.name} state ({self.proxy.status()}).")
        return False

    def _scan_state(self) -> DevState:
        return self.proxy.scan_state(self.scan_key)

    def _is_scan_running(self) -> bool:
        state = self._scan_state()
        if state == DevState.FAULT:
            raise RuntimeError(f"Scan writer state is FAULT: {self.proxy.scan_state_reason(self.scan_key)}")
        return state == DevState.ON

    def _is_scan_notfault(self) -> bool:
        if self._scan_state() == DevState.FAULT:
            raise RuntimeError(f"Scan writer state is FAULT: {self.proxy.scan_state_reason(self.scan_key)}")
        return True

    def _log_new_scan_warnings(self) -> bool:
        count = self.proxy.GetWarningCount(self.scan_key)
        while self.warning_index < count:
            arg = json.dumps({"scan_key": self.scan_key, "index": self.warning_index})
            self.logged_warnings.append(self.proxy.GetWarning(arg))
            self.warning_index += 1
        return True

    # -- what BLISS calls ------------------------------------------------------------------------
    def prepare(self, scan_key: str) -> None:
        """Writer.prepare(scan): every step must pass within 10 s, else the scan fails."""
        self.scan_key = scan_key
        steps = [("writer ON", self._is_writer_on, "Nexus writer is not ON or RUNNING"),
                 ("SaveScan", lambda: bool(self.proxy.SaveScan(scan_key)),
                  f"Nexus writer did not accept scan '{scan_key}' after {{timeout}}s"),
                 ("registered", lambda: self._scan_state() != DevState.UNKNOWN,
                  f"Nexus writer did not receive scan '{scan_key}' after {{timeout}}s"),
                 ("scan ON", self._is_scan_running,
                  f"Nexus writer not ready to save scan '{scan_key}' after {{timeout}}s")]
        for label, method, fail_msg in steps:
            t0 = time.monotonic()
            self._retry(method, fail_msg, raise_on_timeout=True)
            self.timings[label] = time.monotonic() - t0

    def check(self, timeout: float = 0) -> None:
        """Every 3 s during the scan (and at finalize): warnings, then FAULT fails the scan."""
        self.state_checked = True
        self._retry(self._log_new_scan_warnings, "Cannot retrieve Nexus writer scan warnings", timeout=timeout)
        self._retry(self._is_scan_notfault, "Cannot check Nexus writer scan state", timeout=timeout)

    def finalize(self) -> None:
        """BLISS does not wait for the writer at the end."""
        if not self.fault and not self.state_checked:
            self.check(timeout=10)
