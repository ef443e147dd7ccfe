"""RANK 0 ONLY: the Tango class `BlissWriter` — BLISS 2.4's "mapping" writer route.

With `SCAN_SAVING.writer = "mapping"` BLISS publishes the file tree itself (`scan_info["h5maps"]`)
and asks the device of class `BlissWriter` whose `session` property is its session to save each
scan: `SaveScan(scan_key)`. Interface of blisswriter 3.0.0 (commands only, scans keyed by
blissdata scan key, the last 200 remembered); served by the same `NexusWriterService` process as
`NexusWriter`, the tree written collectively by the writer ranks (`driver/requested_scans.py`).

Device state: INIT → ON (accepting SaveScan) ⇄ RUNNING (accepting, scans being written) → OFF
after `Stop` (scans in progress go on) → FAULT while Redis is unusable (it heals itself: ON once Redis
answers again; `Init` tries at once).
"""
from __future__ import annotations

import json
import logging
import threading
import time

import tango
from tango import DevState
from tango.server import command, device_property

from ..driver.requested_scans import MAPPING_ROUTE, RequestedScans, UnknownScan
from ..driver.session import redis_url_for_session
from ..protocol.options import SaveOptions, Tuning
from ..util.paths import policy_for
from .device_common import fail, tango_state, writer_channel
from .display import with_warnings, writing_text
from .properties import BLISS_WRITER, configured_base

log = logging.getLogger("nxpar.tango.blisswriter")

ROUTES: dict[str, RequestedScans] = {}  # device name → route, kept across Tango Init
RECONNECT_S = 2.0
RECONNECTING: set[str] = set()  # devices whose Redis is being tried again (one thread each)
REASON_ACCEPTING = "Accepting SaveScan requests"
REASON_STOPPED = "Not accepting SaveScan requests (Stop); Start to accept them again"


def stop_all_routes(timeout: float = 10) -> None:
    """Service shutdown (main.run_front_end): finalise the scans being written."""
    for route in ROUTES.values():
        route.stop_all(timeout)


class BlissWriter(configured_base(BLISS_WRITER)):
    """One device per BLISS session using the "mapping" route: writes the scans BLISS asks for. Its other
    properties are the table's (service/properties.py): redis_url, the disk space, the tuning, and for
    Lima2 / Mosca streams of the h5map those of NexusWriter (Lima streams follow blisswriter 3.0.0)."""

    session = device_property(dtype=str, default_value="", doc="BLISS session: how BLISS finds this device")
    _redis_url = ""  # once the route asked for it (kept across Tango Init)

    # -- life cycle --------------------------------------------------------------------------------
    def init_device(self) -> None:
        super().init_device()
        self._paths = policy_for(self.get_name(), self.allowed_roots)  # said once in the log (WARNING: unset)
        self._accepting = True
        self._fault = ""
        route = ROUTES.get(self.get_name())
        if route is None:
            channel = writer_channel()
            instance = tango.Util.instance().get_ds_inst_name()
            route = RequestedScans(self.get_name(), channel, self._url, self._options(), self._tuning(),
                                 MAPPING_ROUTE, instance=instance)
            ROUTES[self.get_name()] = route
        else:  # Tango Init: properties re-read for the scans requested from now on
            route.options, route.tuning = self._options(), self._tuning()
        self._route = route
        if not self._connect() and self.get_name() not in RECONNECTING:
            RECONNECTING.add(self.get_name())
            threading.Thread(target=self._reconnect, name=f"reconnect-{self.get_name()}", daemon=True).start()

    def delete_device(self) -> None:
        self.refuse_bad_properties()  # Tango Init with a bad property: refused here, the device as it was

    def _connect(self) -> bool:
        try:
            self._route.connect()
        except Exception as e:
            if not self._fault:
                log.error("%s FAULT (retrying until Redis answers): %s", self.get_name(), e or type(e).__name__)
            self._fault = f"Cannot use Redis: {e or type(e).__name__}; retrying"
            return False
        if self._fault:
            log.warning("%s: Redis answers again", self.get_name())
        else:
            log.info("%s (session %r): accepting SaveScan requests, Redis %s", self.get_name(), self.session,
                     self._redis_url)
        self._fault = ""
        return True

    def _reconnect(self) -> None:
        """FAULT heals itself: tried again every RECONNECT_S until Redis is usable."""
        while not self._connect():
            time.sleep(RECONNECT_S)
        RECONNECTING.discard(self.get_name())

    def _url(self) -> str:
        self._redis_url = self.redis_url or redis_url_for_session()
        return self._redis_url

    def _options(self) -> SaveOptions:
        return SaveOptions(allow_external_hdf5=not self.disable_external_hdf5, copy_non_external=self.copy_non_external,
                           mosca_vds=self.mosca_vds, required_disk_space=self.required_disk_space,
                           recommended_disk_space=self.recommended_disk_space, writer_name="mapping",
                           paths=self._paths)

    def _tuning(self) -> Tuning:
        tuning = Tuning.from_properties(self.flush_period, self.step_mb_per_writer, self.max_write_delay,
                                        self.stale_scan_timeout)
        log.info("%s (session %r): %s", self.get_name(), self.session, tuning.describe())
        return tuning

    def dev_state(self) -> DevState:
        if self._fault:
            return DevState.FAULT
        if not self._accepting:
            return DevState.OFF
        return DevState.RUNNING if self._route.running else DevState.ON

    def dev_status(self) -> str:
        """Accepting or not, which Redis, the scans being written (or why it is FAULT); properties
        replaced by their default."""
        if self._fault:
            text = self._fault
        else:
            writing = writing_text([record.writer for record in self._route.records()])
            text = f"{REASON_ACCEPTING if self._accepting else REASON_STOPPED} (Redis {self._redis_url}): {writing}"
        return with_warnings(text, self.property_warnings)

    def _refuse_when_fault(self, origin: str) -> None:
        if self._fault:
            fail("BlissWriter_Fault", f"Device is FAULT ({self._fault}): it tries again by itself; Init tries at once",
                 origin)

    def _record_check(self, key: str, origin: str):
        try:
            return self._route.record(key)
        except UnknownScan as e:
            fail("BlissWriter_UnknownScan", str(e), origin)

    # -- commands (blisswriter 3.0.0) ----------------------------------------------------------------
    @command
    def Start(self) -> None:
        """Accept SaveScan requests again."""
        self._refuse_when_fault("Start")
        self._accepting = True
        log.info("%s: accepting SaveScan requests", self.get_name())

    @command
    def Stop(self) -> None:
        """Refuse new SaveScan requests; scans being written go on."""
        self._refuse_when_fault("Stop")
        self._accepting = False
        log.info("%s: no longer accepting SaveScan requests", self.get_name())

    @command(dtype_in=str, dtype_out=bool)
    def SaveScan(self, scan_key: str) -> bool:
        """Write the scan (its h5map). False when the device is not accepting (OFF)."""
        self._refuse_when_fault("SaveScan")
        if not self._accepting:
            log.info("%s: SaveScan(%s) refused, the device is OFF", self.get_name(), scan_key)
            return False
        try:
            return self._route.request(scan_key)
        except UnknownScan as e:
            fail("BlissWriter_UnknownScan", f"Cannot load scan '{scan_key}' from Redis: {e.__cause__ or e}",
                  "SaveScan")
        except Exception as e:  # Redis unreachable, …: this request fails, the device stays ON
            fail("BlissWriter_SaveScanFailed", f"Cannot save scan '{scan_key}': {type(e).__name__}: {e}", "SaveScan")
        return False

    @command(dtype_in=str, dtype_out="DevState")
    def scan_state(self, scan_key: str) -> DevState:
        """UNKNOWN (never requested), INIT, ON (writing), OFF (file complete and closed), FAULT."""
        return tango_state(self._route.state(scan_key))

    @command(dtype_in=str, dtype_out=str)
    def scan_state_reason(self, scan_key: str) -> str:
        return self._record_check(scan_key, "scan_state_reason").writer.reason

    @command(dtype_in=str, dtype_out=int)
    def GetWarningCount(self, scan_key: str) -> int:
        self._record_check(scan_key, "GetWarningCount")
        return len(self._route.warnings(scan_key))

    @command(dtype_in=str, dtype_out=str)
    def GetWarning(self, json_value: str) -> str:
        """Argument: '{"scan_key": KEY, "index": N}'."""
        try:
            value = json.loads(json_value)
            scan_key, index = value["scan_key"], value["index"]
            if not isinstance(scan_key, str) or not isinstance(index, int) or isinstance(index, bool):
                raise TypeError("scan_key must be a string and index an integer")
        except (ValueError, KeyError, TypeError) as e:
            fail("BlissWriter_BadArgument", 'GetWarning expects \'{"scan_key": "<key>", "index": <int>}\', '
                  f"got {json_value!r} ({type(e).__name__}: {e})", "GetWarning")
        self._record_check(scan_key, "GetWarning")
        warnings = self._route.warnings(scan_key)
        if not 0 <= index < len(warnings):
            fail("BlissWriter_BadArgument", f"scan '{scan_key}' has {len(warnings)} warning(s), no index {index}",
                  "GetWarning")
        return warnings[index]
