"""RANK 0 ONLY: the Tango class `NexusWriter` — one device per BLISS session (BLISS's "nexus" route).

The Tango interface (names, types, semantics) is blisswriter 2.0.0's, so that an unmodified BLISS 2.4
finds and drives it; docs/interface.md describes it. The devices share the process's writer channel
(`device_common.CHANNEL`, made by `main.run_front_end`).
"""
from __future__ import annotations

import dataclasses
import enum
import logging
import os

import tango
from tango import AttrWriteType, DevState
from tango.server import attribute, command, device_property

from ..driver.profiling import log_resources
from ..driver.session import SessionSubscriber
from ..driver.states import ScanStatus
from ..protocol.options import SaveOptions, Tuning
from ..util.disk import disk_space_message, has_write_permissions
from ..util.paths import policy_for
from . import device_common
from .device_common import fail, tango_state
from .display import (align_columns, column_lines, duration, end_text, info_lines, progress_lines, session_status,
                      start_text)
from .properties import NEXUS_WRITER, configured_base

log = logging.getLogger("nxpar.tango")


class ResourceProfiling(enum.IntEnum):
    OFF = 0
    CPU30 = 1
    CPU50 = 2
    CPU100 = 3
    WALL30 = 4
    WALL50 = 5
    WALL100 = 6
    MEM30 = 7
    MEM50 = 8
    MEM100 = 9


class LogLevel(enum.IntEnum):
    NOTSET = 0
    DEBUG = 1
    INFO = 2
    WARN = 3
    ERROR = 4
    FATAL = 5


_PY_LEVELS = {LogLevel.NOTSET: logging.NOTSET, LogLevel.DEBUG: logging.DEBUG, LogLevel.INFO: logging.INFO,
              LogLevel.WARN: logging.WARNING, LogLevel.ERROR: logging.ERROR, LogLevel.FATAL: logging.CRITICAL}
_LOG4TANGO = {LogLevel.NOTSET: 100, LogLevel.FATAL: 200, LogLevel.ERROR: 300, LogLevel.WARN: 400,
              LogLevel.INFO: 500, LogLevel.DEBUG: 600}


class NexusWriter(configured_base(NEXUS_WRITER)):
    """One device per BLISS session: writes the session's scans as NeXus files. Its other properties
    are the table's (service/properties.py)."""

    session = device_property(dtype=str, mandatory=True, doc="BLISS session whose scans are written")

    # -- life cycle --------------------------------------------------------------------------------
    def init_device(self) -> None:
        super().init_device()
        self._profiling = ResourceProfiling.OFF
        self._paths = policy_for(self.get_name(), self.allowed_roots)  # said once in the log (WARNING: unset)
        self._check_beacon_host()
        sub = device_common.SUBSCRIBERS.get(self.get_name())
        if sub is None:
            instance = tango.Util.instance().get_ds_inst_name()
            options = dataclasses.replace(self._save_options(), paths=self._paths)
            sub = SessionSubscriber(self.session, device_common.writer_channel(), options,
                                    self.purge_delay, instance=instance)  # its tuning: start() sets it
            device_common.SUBSCRIBERS[self.get_name()] = sub
        self._sub = sub
        self.start()

    def delete_device(self) -> None:
        self.refuse_bad_properties()  # Tango Init with a bad property: refused here, the device as it was
        sub = device_common.SUBSCRIBERS.get(self.get_name())
        if sub is not None:
            try:
                sub.stop(timeout=3)
            except RuntimeError as e:  # scans are being written: the device as it was
                fail("NexusWriter_ScansRunning", f"Init refused, the device keeps its settings: {e}; Init again once "
                     "they are written", "Init")

    def _check_beacon_host(self) -> None:
        props = tango.Database().get_device_property(self.get_name(), ["beacon_host"])["beacon_host"]
        if props:
            beacon = props[0]
            env = os.environ.get("BEACON_HOST")
            if env and env != beacon:
                raise RuntimeError(f"Beacon host mismatch: device property {beacon!r}, environment {env!r}")
            os.environ.setdefault("BEACON_HOST", beacon)

    def _tuning(self) -> Tuning:
        tuning = Tuning.from_properties(self.flush_period, self.step_mb_per_writer, self.max_write_delay,
                                        self.stale_scan_timeout)
        log.info("%s (session %r): %s", self.get_name(), self.session, tuning.describe())
        return tuning

    def _save_options(self) -> SaveOptions:
        return SaveOptions(flat=not self.keepshape, multivalue_positioners=self.multivalue_positioners,
                           allow_external_nonhdf5=self.enable_external_nonhdf5,
                           allow_external_hdf5=not self.disable_external_hdf5,
                           copy_non_external=self.copy_non_external, mosca_vds=self.mosca_vds,
                           configurable=not self.noconfig,
                           required_disk_space=self.required_disk_space,
                           recommended_disk_space=self.recommended_disk_space)

    def dev_state(self) -> DevState:
        return tango_state(self._sub.tango_state())

    def dev_status(self) -> str:
        """The session's reason (blisswriter's "Subscribed to Redis" first), which Redis, the scans being
        written; a restart notice, stalled writer ranks, properties replaced by their default."""
        return session_status(self._sub, self.property_warnings)

    # -- helpers -----------------------------------------------------------------------------------
    def _writer(self, name: str, origin: str) -> ScanStatus:
        try:
            return self._sub.get(name)
        except ValueError as e:
            fail("NexusWriter_UnknownScan", str(e), origin)
            raise

    # -- commands (docs/interface.md) -------------------------------------------------------------------
    @command
    def start(self) -> None:
        """Start discovering scans (after stop or FAULT); refreshes the save options."""
        self._sub.options = dataclasses.replace(self._save_options(), paths=self._paths)
        self._sub.tuning = self._tuning()
        self._sub.purge_delay_s = self.purge_delay
        self._sub.start()

    @command
    def stop(self) -> None:
        """Stop discovering new scans; refused while scans are being written."""
        try:
            self._sub.stop()
        except RuntimeError as e:
            fail("NexusWriter_ScansRunning", str(e), "stop")

    @command(dtype_in=str, dtype_out=bool)
    def scan_exists(self, name: str) -> bool:
        return name in self._sub.writers

    @command(dtype_in=str, dtype_out="DevState")
    def scan_state(self, name: str) -> DevState:
        if not name:
            return DevState.UNKNOWN
        return tango_state(self._writer(name, "scan_state").state)

    @command(dtype_in=str, dtype_out=str)
    def scan_state_reason(self, name: str) -> str:
        if not name:
            return ""
        return self._writer(name, "scan_state_reason").reason

    @command(dtype_in=str, dtype_out=(str,))
    def scan_url(self, name: str) -> list[str]:
        if not name:
            return []
        return self._writer(name, "scan_url").urls

    @command(dtype_in=str, dtype_out=bool)
    def scan_has_write_permissions(self, name: str) -> bool:
        filename = self._writer(name, "scan_has_write_permissions").filename
        return True if filename is None else has_write_permissions(filename)

    @command(dtype_in=str, dtype_out=bool)
    def scan_has_required_disk_space(self, name: str) -> bool:
        return not self.scan_disk_space_error(name)

    @command(dtype_in=str, dtype_out=str)
    def scan_disk_space_error(self, name: str) -> str:
        return disk_space_message(self._writer(name, "scan_disk_space_error").filename,
                                  self.required_disk_space)

    @command(dtype_in=str, dtype_out=str)
    def scan_disk_space_warning(self, name: str) -> str:
        return disk_space_message(self._writer(name, "scan_disk_space_warning").filename,
                                  self.recommended_disk_space)

    @command(dtype_in=str)
    def stop_scan(self, name: str) -> None:
        """Finalise the scan's file now (status FAILED), without waiting for the scan to close."""
        self._writer(name, "stop_scan").stop()

    @command(dtype_in=str)
    def kill_scan(self, name: str) -> None:
        """Last resort: stop at once; the file gets only its status, end time and reason."""
        self._writer(name, "kill_scan").kill()

    @command
    def purge_scans(self) -> None:
        self._sub.purge(5.0)

    @command(dtype_in=str)
    def makedirs(self, path: str) -> None:
        if not os.path.isabs(path):
            fail("NexusWriter_RelativePath", "Path must be absolute", "makedirs")
        refused = self._paths.refusal(path, created=True)
        if refused:
            fail("NexusWriter_PathNotAllowed", f"makedirs refused: {refused}", "makedirs")
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as e:
            fail("NexusWriter_MakedirsFailed", f"Cannot create {path}: {e}", "makedirs")

    # -- attributes (docs/interface.md) -----------------------------------------------------------------
    @attribute(dtype=ResourceProfiling, access=AttrWriteType.READ_WRITE)
    def resource_profiling(self) -> ResourceProfiling:
        return self._profiling

    @resource_profiling.write
    def resource_profiling(self, value: int) -> None:
        """Profiles the scan writers created from now on; logs the resources at once."""
        self._profiling = ResourceProfiling(value)
        self._sub.profiling = self._profiling.name
        log_resources(log)

    @attribute(dtype=LogLevel, access=AttrWriteType.READ_WRITE)
    def writer_log_level(self) -> LogLevel:
        level = logging.getLogger("nxpar").getEffectiveLevel()
        return min((lv for lv, py in _PY_LEVELS.items() if py >= level), key=lambda lv: _PY_LEVELS[lv],
                   default=LogLevel.FATAL)

    @writer_log_level.write
    def writer_log_level(self, value: int) -> None:
        logging.getLogger("nxpar").setLevel(_PY_LEVELS[LogLevel(value)])

    @attribute(dtype=LogLevel, access=AttrWriteType.READ_WRITE)
    def tango_log_level(self) -> LogLevel:
        level = self.get_logger().get_level()  # log4tango: 100 OFF, 200 FATAL … 600 DEBUG
        return {v: k for k, v in _LOG4TANGO.items()}.get(level, LogLevel.NOTSET)

    @tango_log_level.write
    def tango_log_level(self, value: int) -> None:
        self.get_logger().set_level(_LOG4TANGO[LogLevel(value)])

    @attribute(dtype=(DevState,), max_dim_x=10000)
    def scan_states(self) -> list[DevState]:
        return [tango_state(w.state) for w in self._sub.sorted_writers()]

    @attribute(dtype=(str,), max_dim_x=10000)
    def scan_names(self) -> list[str]:
        return [w.name for w in self._sub.sorted_writers()]

    @attribute(dtype=(str,), max_dim_x=10000)
    def scan_urls(self) -> list[str]:
        return column_lines(self._sub.sorted_writers(), lambda w: repr(w.urls))

    @attribute(dtype=(str,), max_dim_x=10000)
    def scan_start(self) -> list[str]:
        return column_lines(self._sub.sorted_writers(), start_text)

    @attribute(dtype=(str,), max_dim_x=10000)
    def scan_end(self) -> list[str]:
        return column_lines(self._sub.sorted_writers(), end_text)

    @attribute(dtype=(str,), max_dim_x=10000)
    def scan_duration(self) -> list[str]:
        return column_lines(self._sub.sorted_writers(), lambda w: str(duration(w)))

    @attribute(dtype=(str,), max_dim_x=10000)
    def scan_progress(self) -> list[str]:
        return progress_lines(self._sub.sorted_writers())

    @attribute(dtype=(str,), max_dim_x=10000)
    def scan_info(self) -> list[str]:
        return info_lines(self._sub.sorted_writers())

    @attribute(dtype=(str,), max_dim_x=10000)
    def scan_states_info(self) -> list[str]:
        return align_columns([[f"{w.name}:", tango_state(w.state).name, w.reason]
                              for w in self._sub.sorted_writers()])
