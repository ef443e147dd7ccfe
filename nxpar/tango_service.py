"""`NexusWriterService INSTANCE`: the MPI job. Rank 0 serves the Tango `NexusWriter` devices;
ranks 1..N-1 are writers (nxpar.worker) and never talk Tango.

The Tango interface (names, types, semantics) is blisswriter 2.0.0's, so that an unmodified
BLISS 2.4 finds and drives it; docs/interface.md describes it.
"""
from __future__ import annotations

import argparse
import enum
import logging
import os
import sys
import time

import tango
from tango import AttrWriteType, DevState, Except
from tango.server import Device, attribute, command, device_property

from . import logging_setup
from .disk import disk_space_message, has_write_permissions
from .options import SaveOptions, Tuning
from .rank0.session import DEFAULT_PURGE_DELAY_S, SessionSubscriber
from .rank0.states import ScanStatus, State
from .rank0.writer_channel import WriterChannel
from .tango_display import align_columns, column_lines, duration, end_text, info_lines, progress_lines, start_text

log = logging.getLogger("nxpar.tango")

# Rank-0 process state shared by all devices of this server.
CHANNEL: WriterChannel | None = None
SUBSCRIBERS: dict[str, SessionSubscriber] = {}


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
_TANGO_STATES = {State.INIT: DevState.INIT, State.ON: DevState.ON, State.RUNNING: DevState.RUNNING,
                 State.OFF: DevState.OFF, State.FAULT: DevState.FAULT}


def _fail(reason: str, message: str, origin: str) -> None:
    Except.throw_exception(reason, message, origin)


class NexusWriter(Device):
    """One device per BLISS session: writes the session's scans as NeXus files."""

    session = device_property(dtype=str, mandatory=True, doc="BLISS session whose scans are written")
    keepshape = device_property(dtype=bool, default_value=False)
    multivalue_positioners = device_property(dtype=bool, default_value=False)
    enable_external_nonhdf5 = device_property(dtype=bool, default_value=False)
    disable_external_hdf5 = device_property(dtype=bool, default_value=False)
    copy_non_external = device_property(dtype=bool, default_value=False)
    mosca_vds = device_property(dtype=bool, default_value=False,
                                doc="Mosca spectra as a virtual dataset over Mosca's files (default: copied)")
    noconfig = device_property(dtype=bool, default_value=False)
    required_disk_space = device_property(dtype=float, default_value=200.0, doc="MB: below it writing fails")
    recommended_disk_space = device_property(dtype=float, default_value=1024.0, doc="MB: below it a warning")
    purge_delay = device_property(dtype=float, default_value=DEFAULT_PURGE_DELAY_S,
                                  doc="seconds after which finished scan writers are forgotten")
    flush_period = device_property(dtype=float, default_value=0.5,
                                   doc="seconds between collective flushes (what readers see during a scan)")
    step_mb_per_writer = device_property(dtype=float, default_value=16.0,
                                         doc="MB each writer rank reads and writes per step (memory per rank)")
    max_write_delay = device_property(dtype=float, default_value=0.5,
                                      doc="seconds rows of a partly filled chunk may wait before they are written")

    # -- life cycle --------------------------------------------------------------------------------
    def init_device(self) -> None:
        super().init_device()
        self._profiling = ResourceProfiling.OFF
        self._check_beacon_host()
        sub = SUBSCRIBERS.get(self.get_name())
        if sub is None:
            assert CHANNEL is not None, "the writer channel is created before the Tango server starts"
            instance = tango.Util.instance().get_ds_inst_name()
            sub = SessionSubscriber(self.session, CHANNEL, self._save_options(), self.purge_delay, self._tuning(),
                                    instance=instance)
            SUBSCRIBERS[self.get_name()] = sub
        self._sub = sub
        self.start()

    def delete_device(self) -> None:
        sub = SUBSCRIBERS.get(self.get_name())
        if sub is not None:
            sub.stop(timeout=3)

    def _check_beacon_host(self) -> None:
        props = tango.Database().get_device_property(self.get_name(), ["beacon_host"])["beacon_host"]
        if props:
            beacon = props[0]
            env = os.environ.get("BEACON_HOST")
            if env and env != beacon:
                raise RuntimeError(f"Beacon host mismatch: device property {beacon!r}, environment {env!r}")
            os.environ.setdefault("BEACON_HOST", beacon)

    def _tuning(self) -> Tuning:
        tuning = Tuning.from_properties(self.flush_period, self.step_mb_per_writer, self.max_write_delay)
        log.info("%s: %s", self.session, tuning.describe())
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
        return _TANGO_STATES.get(self._sub.tango_state(), DevState.UNKNOWN)

    def dev_status(self) -> str:
        return self._sub.reason + (f" ({self._sub.notice})" if self._sub.notice else "")

    # -- helpers -----------------------------------------------------------------------------------
    def _writer(self, name: str, origin: str) -> ScanStatus:
        try:
            return self._sub.get(name)
        except ValueError as e:
            _fail("NexusWriter_UnknownScan", str(e), origin)
            raise

    # -- commands (docs/interface.md) -------------------------------------------------------------------
    @command
    def start(self) -> None:
        """Start discovering scans (after stop or FAULT); refreshes the save options."""
        self._sub.options = self._save_options()
        self._sub.tuning = self._tuning()
        self._sub.purge_delay_s = self.purge_delay
        self._sub.start()

    @command
    def stop(self) -> None:
        """Stop discovering new scans; refused while scans are being written."""
        try:
            self._sub.stop()
        except RuntimeError as e:
            _fail("NexusWriter_ScansRunning", str(e), "stop")

    @command(dtype_in=str, dtype_out=bool)
    def scan_exists(self, name: str) -> bool:
        return name in self._sub.writers

    @command(dtype_in=str, dtype_out="DevState")
    def scan_state(self, name: str) -> DevState:
        if not name:
            return DevState.UNKNOWN
        return _TANGO_STATES.get(self._writer(name, "scan_state").state, DevState.UNKNOWN)

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
        writer = self._sub.writers.get(name)
        if writer is not None:
            writer.stop()

    @command(dtype_in=str)
    def kill_scan(self, name: str) -> None:
        """Last resort: stop at once, no finalisation; the file may be incomplete."""
        writer = self._sub.writers.get(name)
        if writer is not None:
            writer.kill()

    @command
    def purge_scans(self) -> None:
        self._sub.purge(5.0)

    @command(dtype_in=str)
    def makedirs(self, path: str) -> None:
        if not os.path.isabs(path):
            _fail("NexusWriter_RelativePath", "Path must be absolute", "makedirs")
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as e:
            _fail("NexusWriter_MakedirsFailed", f"Cannot create {path}: {e}", "makedirs")

    # -- attributes (docs/interface.md) -----------------------------------------------------------------
    @attribute(dtype=ResourceProfiling, access=AttrWriteType.READ_WRITE)
    def resource_profiling(self) -> ResourceProfiling:
        return self._profiling

    @resource_profiling.write
    def resource_profiling(self, value: int) -> None:
        """Profiles the scan writers created from now on; logs the resources at once."""
        self._profiling = ResourceProfiling(value)
        self._sub.profiling = self._profiling.name
        logging_setup.log_resources(log)

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
        return [_TANGO_STATES.get(w.state, DevState.UNKNOWN) for w in self._sub.sorted_writers()]

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
        return align_columns([[f"{w.name}:", _TANGO_STATES.get(w.state, DevState.UNKNOWN).name, w.reason]
                              for w in self._sub.sorted_writers()])


# -- entry point -----------------------------------------------------------------------------------
def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="NexusWriterService", description=__doc__)
    p.add_argument("instance", help="Tango server instance (e.g. nexuswriters)")
    p.add_argument("--server", default="nexuswriter", help="Tango server name")
    p.add_argument("--log_tango", default="WARNING", type=str.upper,
                   choices=["CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG", "NOTSET"],
                   help="verbosity of the Tango library (default WARNING)")
    p.add_argument("--patch", action="append", default=[], help="accepted and ignored (blisswriter test option)")
    logging_setup.add_cli_args(p)
    return p.parse_args(argv)


TANGO_VERBOSITY = {"DEBUG": "-v5", "INFO": "-v4", "WARNING": "-v3", "ERROR": "-v2", "CRITICAL": "-v1"}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from mpi4py import MPI

    from .mpi_roles import writer_comm

    world = MPI.COMM_WORLD
    logging_setup.configure(args, rank=world.rank)
    if world.rank == 0:  # what the writer ranks will open the scan files with (nxpar/collective/file_access.py)
        from .collective.file_access import log_settings, settings_from_env

        log_settings(settings_from_env())
    writers = writer_comm()  # COLLECTIVE: every rank, once
    if world.rank != 0:
        from .worker import run_worker

        run_worker(world, writers)
        return
    run_front_end(world, writers, args)


def run_front_end(world, writers, args: argparse.Namespace) -> None:
    """RANK 0: the Tango server; on exit the writer ranks are told to close and leave."""
    global CHANNEL
    CHANNEL = WriterChannel(world, writers)
    tango_args = [args.server, args.instance]
    if args.log_tango in TANGO_VERBOSITY:
        tango_args.append(TANGO_VERBOSITY[args.log_tango])
    log.info("rank 0 of %d: Tango server %s/%s", world.size, args.server, args.instance)
    try:
        from tango.server import run

        from .tango_blisswriter import BlissWriter  # BLISS's "mapping" route, same process

        run((NexusWriter, BlissWriter), args=tango_args, green_mode=tango.GreenMode.Synchronous)
    finally:
        from .tango_blisswriter import stop_all_routes

        stop_all_routes()
        for sub in SUBSCRIBERS.values():
            for w in list(sub.writers.values()):
                if w.is_alive():
                    w.stop(timeout=10)
        CHANNEL.shutdown()
        time.sleep(0.1)


if __name__ == "__main__":
    main()
