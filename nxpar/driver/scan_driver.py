"""RANK 0 ONLY: one thread per scan. Follows the blissdata scan, plans the file, drives the writers.

The flow, top to bottom in `_write`: wait for PREPARED → plan (scan_info parsed and validated,
nothing touched yet) → open the file → stream (rows of every stream as they are published) →
wait for CLOSED → finalise → close. States (`State`): INIT → ON → OFF | FAULT; OFF only once the
file is closed. The thread never touches HDF5 or MPI itself: every file operation is a step sent
through the WriterChannel, so all writer ranks apply it together. Redis is reached only through
`ScanSource` (lengths in one pipelined round trip, never bulk data). The streams are followed by
the driver's `StreamFollower` (stream_follower.py: kinds, lengths, what is due, the backlog); row
batching and back-pressure are in row_writes.py, end-of-scan nodes in finalisation.py.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

from blissdata.redis_engine.scan import ScanState

from ..nexus.file_plan import FilePlan, StreamKind
from ..nexus.scan_info import saving_enabled
from ..protocol import steps as st
from ..protocol.options import SaveOptions, Tuning
from ..util.disk import disk_space_message
from .finalisation import grid_axis_values, reference_nodes
from .journal import Journal
from .plan_choice import make_plan
from .plugin_streams import PluginStreams, is_plugin_kind
from .profiling import PROFILER
from .row_writes import RowWrites, StreamProgress
from .scan_source import ScanSource
from .states import REASON_DONE, REASON_RUNNING, State
from .stream_follower import StreamFollower
from .writer_channel import StepError, WriterChannel

log = logging.getLogger("nxpar.scan")

KILLED = "Killed: writing stopped without finalisation, the file may be incomplete"


class StopRequested(RuntimeError):
    pass


class ScanDriver:
    interrupted = False  # see journal.InterruptedScan

    def __init__(self, source: ScanSource, redis_url: str, options: SaveOptions, channel: WriterChannel,
                 tuning: Tuning | None = None, blissdata_version: str = "", journal: Journal | None = None,
                 plan_factory: Callable[[dict[str, Any], SaveOptions, str], FilePlan] | None = None) -> None:
        self.source = source
        source.check_stop = self._check_stop  # Redis retries end when a stop is requested
        self.name: str = source.info["name"]
        self.key: str = source.key
        self.redis_url = redis_url
        self.options = options
        self.channel = channel
        self.tuning = tuning or Tuning()
        self.blissdata_version = blissdata_version
        self.journal = journal
        self.plan_factory = plan_factory or make_plan  # the mapping route requires an h5map (requested_scans.py)
        self.profiling = "OFF"  # resource_profiling mode when the writer was created
        self.state, self.reason = State.INIT, "instantiation"
        self.created = time.time()
        self.start_time: float | None = None
        self.end_time: float | None = None
        self.plan: FilePlan | None = None
        self.warning = ""
        self.timeline: dict[str, float] = {}
        self._stop = threading.Event()
        self._killed = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"scan-{self.name}", daemon=True)
        self.plugins = PluginStreams(source, channel, self._add_warning)  # Lima2 / Mosca channels
        self.rows = RowWrites(self.key, channel.submit, channel.nwriters, self.tuning, self.plugins.write_failed)
        self.follower = StreamFollower(source, redis_url, channel, self.rows, self.plugins)

    # -- control (any thread) --------------------------------------------------------------------
    def start(self) -> None:
        self.reason = "Starting"
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Graceful: finalise with what is there, without waiting for CLOSED."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def kill(self) -> None:
        """At once: no finalisation. The file is closed as it is and may be incomplete."""
        self._killed.set()
        self._stop.set()

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    # -- what the device reports -------------------------------------------------------------------
    @property
    def filename(self) -> str | None:
        """The scan file: from the plan, or from the CREATED scan_info before PREPARED."""
        if self.plan is not None:
            return self.plan.filename
        info = self.source.info
        name = info.get("filename") if isinstance(info, dict) else None
        return name if isinstance(name, str) and name else None

    @property
    def urls(self) -> list[str]:
        return self.plan.urls() if self.plan else []

    @property
    def bytes_written(self) -> int:
        return self.rows.bytes_written

    @property
    def streams(self) -> dict[str, StreamProgress]:
        """Every stream the plan wants, and how far it is published and written (StreamFollower)."""
        return self.follower.streams

    @property
    def lima_infos(self) -> dict[str, dict]:
        return self.follower.lima_infos

    def backlog(self) -> int:
        """Points published but not yet written (the slowest stream): back-pressure made visible."""
        return self.follower.backlog()

    def backlog_bytes(self) -> int:
        return self.follower.backlog_bytes()

    def published(self) -> int:
        return max((p.available for p in self.streams.values()), default=0)

    def progress(self) -> dict[str, dict[str, int]]:
        """{entry: {dataset: points written}} for scan_progress."""
        out: dict[str, dict[str, int]] = {}
        if self.plan is None:
            return out
        for p in self.streams.values():
            if p.kind != StreamKind.SCAN and (p.spec is not None or p.kind == StreamKind.LIMA or is_plugin_kind(p.kind)):
                out.setdefault(self.plan.entry_of(p.name), {})[p.name] = p.written
        return out

    def timeline_str(self) -> str:
        """When each phase ended, from PREPARED: where the time between scan end and file closed goes."""
        t0 = self.timeline.get("prepared")
        if t0 is None:
            return ""
        return ", ".join(f"{event} +{t - t0:.2f}s" for event, t in self.timeline.items() if event != "prepared")

    # -- the thread: the flow ----------------------------------------------------------------------
    def _run(self) -> None:
        self.start_time = time.time()
        self.state, self.reason = State.ON, REASON_RUNNING
        with PROFILER.profile(self.profiling, self.name):
            try:
                self._write()
                final = (State.OFF, REASON_DONE)
            except Exception as e:
                log.warning("scan %s FAULT: %s", self.name, e, exc_info=log.isEnabledFor(logging.DEBUG))
                final = (State.FAULT, str(e) or type(e).__name__)
        self.end_time = time.time()
        self.state, self.reason = final  # OFF means "complete on disk": set once the file is closed

    def _write(self) -> None:
        self.source.wait_for(ScanState.PREPARED)
        if not saving_enabled(self.source.info, self.options.writer_name):
            log.info("%s: saving is disabled", self.name)
            return
        self._mark("prepared")
        plan = self.plan = self.plan_factory(self.source.info, self.options, self.blissdata_version)
        self._check_disk(plan.filename)
        self.channel.call(st.OpenFile(self.key, plan.filename, plan.root_attrs(), plan.entry_names))
        if self.journal is not None:
            self.journal.add(self.key, self.name, plan.filename, plan.entry_names)
        try:
            self._initialise(plan)
            self._stream_and_finalise(plan)
        except BaseException:
            self._close(raise_errors=False)
            raise
        self._close(raise_errors=True)

    def _initialise(self, plan: FilePlan) -> None:
        """The skeleton (status STARTING), master files, then status RUNNING."""
        self.channel.call(st.Tree(self.key, plan.skeleton()))
        for path, nodes in plan.master_links().items():
            self.channel.call(st.LocalFile(self.key, path, {"NX_class": "NXroot", "creator": "nxpar"}, nodes))
        self.channel.call(st.Tree(self.key, plan.running()))

    def _stream_and_finalise(self, plan: FilePlan) -> None:
        """Whatever happens while streaming, the file is finalised (status FAILED after a failure),
        then the failure is raised; a kill writes only the status."""
        failure: BaseException | None = None
        try:
            self._stream(plan)
            self._mark("data written")
            self.source.wait_for(ScanState.CLOSED)
            self._mark("CLOSED")
        except BaseException as e:
            failure = e
            self.rows.wait_all(ignore_errors=True)
        if self._killed.is_set():
            self.channel.call(st.Tree(self.key, plan.failed_nodes(KILLED)))  # the file says so
            raise StopRequested(KILLED)
        try:
            self._finalise(plan, failed=failure is not None, refresh=not isinstance(failure, StepError))
        except Exception as e:
            failure = failure or e
        self._mark("finalised")
        if failure is not None:
            raise failure

    def _finalise(self, plan: FilePlan, failed: bool, refresh: bool) -> None:
        if refresh:
            self.source.refresh()
        written = {p.name for p in self.streams.values() if p.written and p.kind != StreamKind.SCAN}
        nodes = reference_nodes(plan, self.source, list(self.streams.values()), self.lima_infos)
        nodes += self.plugins.final_nodes(plan, self.streams)  # Lima2 / Mosca: last VDS, copy warnings
        nodes += plan.final_nodes(self.source.final_info(), failed, written,
                                  grid_axis_values(plan, self.source, self.streams, self.name))
        self.channel.call(st.Tree(self.key, nodes))

    def _close(self, raise_errors: bool) -> None:
        error = None
        try:
            self.channel.call(st.CloseFile(self.key))
        except Exception as e:
            error = e
        if self.journal is not None:
            self.journal.remove(self.key)
        self._mark("file closed")
        log.info("scan %s: %s", self.name, self.timeline_str())
        if error is not None and raise_errors:
            raise RuntimeError(f"closing the file failed: {error}") from error

    def _mark(self, event: str) -> None:
        self.timeline[event] = time.monotonic()

    def _check_stop(self) -> None:
        if self._stop.is_set():
            raise StopRequested("Stop requested")

    def _check_disk(self, filename: str) -> None:
        message = disk_space_message(filename, self.options.required_disk_space)
        if message:
            raise RuntimeError(message)

    # -- streaming ---------------------------------------------------------------------------------
    def _stream(self, plan: FilePlan) -> None:
        """Until every stream is sealed and written: lengths, due rows, flushes, disk checks."""
        follower = self.follower
        follower.classify(plan)
        last_flush = last_disk = time.monotonic()
        dirty = False
        while True:
            self._check_stop()
            self.rows.wait_for_room()
            follower.refresh_lengths_when_due()
            wrote = follower.send_due(plan)
            dirty |= wrote
            now = time.monotonic()
            if dirty and now - last_flush >= self.tuning.flush_period_s:
                self.channel.call(st.Flush(self.key))
                last_flush, dirty = now, False
            if now - last_disk >= self.tuning.disk_check_period_s:
                self._check_disk(plan.filename)
                self.warning = follower.backlog_warning()
                last_disk = now
            if follower.all_done():
                self.rows.wait_all()
                if dirty:
                    self.channel.call(st.Flush(self.key))
                follower.check_all_copied()
                return
            if not wrote:
                time.sleep(self.tuning.poll_period_s)

    def _add_warning(self, text: str) -> None:
        """A channel's warning, shown at once (scan_info / scan_progress)."""
        if text not in self.warning:
            self.warning = "; ".join(w for w in (self.warning, text) if w)
