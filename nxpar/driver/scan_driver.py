"""RANK 0 ONLY: one thread per scan. Follows the blissdata scan, plans the file, drives the writers.

The flow, top to bottom in `_write`: wait for PREPARED → plan (scan_info parsed and validated, its
paths inside the allowed roots: path_checks.py; nothing touched yet) → open the file → stream (rows of
every stream as they are published) → wait for CLOSED → finalise → close. States (`State`): INIT → ON
→ OFF | FAULT; OFF only once the file is closed. The thread never touches HDF5 or MPI itself: every
file operation is a step sent through the WriterChannel, so all writer ranks apply it together. Redis
is reached only through `ScanSource` (lengths in one pipelined round trip, never bulk data). The
streams are followed by the driver's `StreamFollower` (stream_follower.py: kinds, lengths, what is
due, the backlog); row batching and back-pressure are in row_writes.py, end-of-scan nodes in
finalisation.py.
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
from .durability import Durability, forget_when_durable
from .journal import Journal
from .liveness import Liveness
from .path_checks import checked_scan_file
from .plan_choice import make_plan
from .plugin_streams import PluginStreams
from .profiling import PROFILER
from .resume import Interruption
from . import scan_log
from .row_writes import RowWrites, StreamProgress
from .scan_ending import KILLED, SHUTDOWN, DataMismatch, ScanEnding, StopRequested, reason_of
from .scan_source import ScanSource
from .states import REASON_DONE, REASON_RUNNING, State
from .stream_follower import StreamFollower
from .writer_channel import WriterChannel

log = logging.getLogger("nxpar.scan")

class ScanDriver:
    interrupted = False  # see journal.InterruptedScan

    def __init__(self, source: ScanSource, redis_url: str, options: SaveOptions, channel: WriterChannel,
                 tuning: Tuning | None = None, blissdata_version: str = "", journal: Journal | None = None,
                 plan_factory: Callable[[dict[str, Any], SaveOptions, str], FilePlan] | None = None,
                 interruption: Interruption | None = None, elsewhere: Callable[[], float] | None = None,
                 durability: Durability | None = None) -> None:
        """interruption: the scan is written again after the run that was writing it died (resume.py);
        elsewhere(): when the session's other scans last changed (a sequence is judged by its children)."""
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
        self._warning = ""
        self.timeline: dict[str, float] = {}
        self.interruption = interruption
        self.durability = durability  # the closed file fsynced before the journal forgets the scan
        self.mismatches: list[str] = []  # channels whose rows are not what they declare: the scan FAULTs
        self.liveness = Liveness(self.tuning.stale_scan_timeout_s, elsewhere or (lambda: 0.0))
        self._keep_journal = False  # stopped by the service's shutdown: the restarted service resumes it
        self._stop = threading.Event()
        self._killed = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"scan-{self.name}", daemon=True)
        self.plugins = PluginStreams(source, channel, self._add_warning)  # Lima2 / Mosca channels
        self.rows = RowWrites(self.key, channel.submit, channel.nwriters, self.tuning, self._channel_failed)
        self.follower = StreamFollower(source, redis_url, channel, self.rows, self.plugins)
        self.ending = ScanEnding(self)

    # -- control (any thread) --------------------------------------------------------------------
    def start(self) -> None:
        self.reason = "Starting"
        self._thread.start()

    def stop(self, timeout: float | None = None, resumable: bool = False) -> None:
        """Graceful: finalise with what is there (FAILED), without waiting for CLOSED. resumable: the
        service is shutting down; its next run writes the scan again from Redis (the journal keeps it)."""
        self._keep_journal = resumable
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
    def warning(self) -> str:
        """What the scan warns of: backlog and Lima2 / Mosca channels, channels not as declared, a scan
        written again after an interruption; while it is written, also writer ranks that look stalled."""
        stall = self.channel.stall_warning() if self.is_alive() else ""
        resumed = self.interruption.warning() if self.interruption is not None and self.state == State.OFF else ""
        return "; ".join(w for w in (self._warning, *self.mismatches, resumed, stall) if w)

    @warning.setter
    def warning(self, text: str) -> None:
        self._warning = text

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

    def published(self) -> int:
        return max((p.available for p in self.streams.values()), default=0)

    def progress(self) -> dict[str, dict[str, int]]:
        """{entry: {dataset: points written}} for scan_progress."""
        return self.follower.progress(self.plan) if self.plan is not None else {}

    # -- the thread: the flow ----------------------------------------------------------------------
    def _run(self) -> None:
        self.start_time = time.time()
        self.state, self.reason = State.ON, REASON_RUNNING
        with PROFILER.profile(self.profiling, self.name):
            try:
                self._write()
                final = (State.OFF, REASON_DONE)
            except Exception as e:
                log.debug("scan %s FAULT", self.name, exc_info=True)  # the reason: scan_log's end line
                final = (State.FAULT, reason_of(e))
        self.end_time = time.time()
        self.state, self.reason = final  # OFF means "complete on disk": set once the file is closed
        scan_log.ended(self)
        self._forget_journal(closed=self.plan is not None)

    def _forget_journal(self, closed: bool) -> None:
        """The journal forgets the scan once its file is on disk (durability.py: fsynced in the
        background); a scan stopped by the service's own shutdown stays, for its next run to resume."""
        if self.journal is not None and not self._keep_journal:
            forget_when_durable(self.journal, self.key, self.plan.filename if closed else "", self.durability)

    def _write(self) -> None:
        self.source.wait_for(ScanState.PREPARED)
        if not saving_enabled(self.source.info, self.options.writer_name):
            log.info("%s: saving is disabled", self.name)
            return
        self._mark("prepared")
        plan = self.plan = self.plan_factory(self.source.info, self.options, self.blissdata_version)
        self._check_disk(checked_scan_file(plan, self.options.paths))  # paths outside the allowed roots: FAULT
        self.channel.call(st.OpenFile(self.key, plan.filename, plan.root_attrs(), plan.entry_names,
                                      replace_entries=self.interruption is not None))
        if self.journal is not None:
            self.journal.opened(self.key, self.name, plan.filename, plan.entry_names)
        scan_log.opened(self)
        failure = self._write_and_finalise(plan)
        error = self.ending.close(plan, failure)
        self._mark("file closed")
        if failure is not None:
            raise failure
        if error is not None:
            raise RuntimeError(f"closing the file failed: {error}") from error

    def _write_and_finalise(self, plan: FilePlan) -> BaseException | None:
        """The skeleton, the data, the end: whatever fails, the file is finalised (FAILED, with the reason,
        or at least its bare ending); the failure is returned."""
        failure: BaseException | None = None
        try:
            self._initialise(plan)
            self._stream(plan)
            self._mark("data written")
            self.source.wait_for(ScanState.CLOSED)
            self._mark("CLOSED")
            if self.mismatches:
                raise DataMismatch("; ".join(self.mismatches))
        except BaseException as e:
            failure = e
            self.rows.wait_all(ignore_errors=True)
        if self._killed.is_set():
            self.ending.bare_ending(plan, KILLED)  # the file says so
            return StopRequested(KILLED)
        if self._keep_journal and isinstance(failure, StopRequested):
            failure = StopRequested(SHUTDOWN)
        failure = self.ending.finalise(plan, failure, self.interruption)
        self._mark("finalised")
        return failure

    def _initialise(self, plan: FilePlan) -> None:
        """The skeleton (status STARTING), master files, then status RUNNING."""
        self.channel.call(st.Tree(self.key, plan.skeleton()))
        for path, nodes in plan.master_links().items():
            self.channel.call(st.LocalFile(self.key, path, {"NX_class": "NXroot", "creator": "nxpar"}, nodes))
        self.channel.call(st.Tree(self.key, plan.running()))

    def _mark(self, event: str) -> None:
        self.timeline[event] = time.time()  # wall clock: compared with scan_info's end_time (scan_log)

    def _check_stop(self) -> None:
        """Every loop of the driver and of its waits: a stop asked for, or the scan gone stale, ends it."""
        if self._stop.is_set():
            raise StopRequested("Stop requested")
        self.liveness.see((self.source.state, tuple((p.available, p.sealed) for p in self.streams.values())))
        self.liveness.check(judged_by_children=any(p.kind == StreamKind.SCAN for p in self.streams.values()))

    @property
    def last_change(self) -> float:
        return self.liveness.last_change

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
                self.source.refresh()
                if dirty and self.source.state < ScanState.STOPPED:  # else the close follows at once
                    self.channel.call(st.Flush(self.key))
                follower.check_all_copied()
                return
            if not wrote:
                self.source.sleep_until_change(self.tuning.poll_period_s)
                if self.source.state >= ScanState.STOPPED and "STOPPED" not in self.timeline:
                    self._mark("STOPPED")

    def _channel_failed(self, stream: str, start: int, stop: int, failure: st.ChannelFailure) -> None:
        """The writers skipped a channel's rows: a warning (Lima2 / Mosca unreadable), or rows that are not
        what the channel declares (the scan goes on with its other streams and FAULTs at its end)."""
        if failure.kind == st.FailureKind.MISMATCH:
            log.error("scan %s: %s", self.name, failure.reason)
            self.mismatches.append(failure.reason)
        else:
            self.plugins.write_failed(stream, start, stop, failure.reason)

    def _add_warning(self, text: str) -> None:
        """A channel's warning, shown at once (scan_info / scan_progress)."""
        if text not in self._warning:
            self._warning = "; ".join(w for w in (self._warning, text) if w)
