"""RANK 0 ONLY: one thread per scan. Follows the blissdata scan, plans the file, drives the writers.

The flow, top to bottom in `_write`: wait for PREPARED → plan (scan_info parsed and validated,
nothing touched yet) → open the file → stream (rows of every stream as they are published) →
wait for CLOSED → finalise → close. States (`State`): INIT → ON → OFF | FAULT; OFF only once the
file is closed. The thread never touches HDF5 or MPI itself: every file operation is a step sent
through the WriterChannel, so all writer ranks apply it together. Redis is reached only through
`ScanSource` (lengths in one pipelined round trip, never bulk data); row batching and
back-pressure are in row_writes.py, end-of-scan nodes in finalisation.py.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

from blissdata.redis_engine.scan import ScanState

from ..nexus.file_plan import FilePlan, StreamKind
from ..nexus.lima_plan import LimaMode
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
from .scan_source import ScanGone, ScanSource, StreamDescription
from .states import REASON_DONE, REASON_RUNNING, State
from .writer_channel import StepError, WriterChannel

log = logging.getLogger("nxpar.scan")

# Stream lengths are asked at least this often (seals, scalars), and at every loop while fewer rows are
# known than the next steps can take (RowWrites.knows_enough).
LENGTHS_MAX_AGE_S = 0.25
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
        self.streams: dict[str, StreamProgress] = {}
        self.lima_infos: dict[str, dict] = {}
        self.warning = ""
        self.timeline: dict[str, float] = {}
        self._stop = threading.Event()
        self._killed = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"scan-{self.name}", daemon=True)
        self.plugins = PluginStreams(source, channel, self._add_warning)  # Lima2 / Mosca channels
        self.rows = RowWrites(self.key, channel.submit, channel.nwriters, self.tuning, self.plugins.write_failed)
        self._follow = {StreamKind.LIMA: self._follow_references, StreamKind.SCAN: self._follow_references,
                        StreamKind.LIMA_COPY: self._follow_lima_copy}

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

    def backlog(self) -> int:
        """Points published but not yet written (the slowest stream): back-pressure made visible."""
        return max((p.available - p.written for p in self.streams.values() if p.kind in (StreamKind.ARRAY, StreamKind.LIMA_COPY)),
                   default=0)

    def backlog_bytes(self) -> int:
        return sum((p.available - p.written) * p.spec.row_nbytes for p in self.streams.values()
                   if p.spec is not None and not p.given_up)

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
        self._classify(plan)
        last_flush = last_disk = last_lengths = time.monotonic()
        dirty = False
        while True:
            self._check_stop()
            self.rows.wait_for_room()
            if time.monotonic() - last_lengths >= LENGTHS_MAX_AGE_S or \
                    not self.rows.knows_enough(list(self.streams.values())):
                self._refresh_lengths()
                last_lengths = time.monotonic()
            wrote = self._link_lima_groups(plan)
            wrote |= self.plugins.link(plan, self.streams)  # Lima2 / Mosca groups and growing VDS
            wrote |= self._submit_rows(plan)
            dirty |= wrote
            now = time.monotonic()
            if dirty and now - last_flush >= self.tuning.flush_period_s:
                self.channel.call(st.Flush(self.key))
                last_flush, dirty = now, False
            if now - last_disk >= self.tuning.disk_check_period_s:
                self._check_disk(plan.filename)
                self._report_backlog()
                last_disk = now
            if all(p.done for p in self.streams.values()):
                self.rows.wait_all()
                if dirty:
                    self.channel.call(st.Flush(self.key))
                self._check_all_copied()
                return
            if not wrote:
                time.sleep(self.tuning.poll_period_s)

    def _classify(self, plan: FilePlan) -> None:
        """The kind of every stream the plan wants; an unknown or unsupported stream FAULTs the scan."""
        for d in self.source.streams():
            if not plan.wants(d.name):
                continue  # an h5map that does not mention the stream
            plan.entry_of(d.name)  # KeyError naming the stream: not in the acquisition chain
            plugin_kind = self.plugins.classify(d, plan)  # Lima2 / Mosca (plugin_streams.py)
            if plugin_kind is not None:
                self.streams[d.name] = StreamProgress(d.name, plugin_kind)
                continue
            kind = self._kind_of(d, plan)
            if kind not in plan.stream_kinds:
                raise NotImplementedError(f"Stream {d.name} ({kind.value}) cannot be written as a dataset of the "
                                          "h5map: map Lima frames as a virtual or external dataset")
            self.streams[d.name] = StreamProgress(d.name, kind)
            if d.lima_info is not None:
                self.lima_infos[d.name] = d.lima_info

    @staticmethod
    def _kind_of(d: StreamDescription, plan: FilePlan) -> StreamKind:
        """blissdata's (kind, plugin) → how nxpar follows the stream."""
        if d.kind == "array" and d.plugin in (None, "hdf5_fallback"):
            return StreamKind.ARRAY
        if d.kind == "array" and d.plugin == "lima":
            copy = StreamKind.LIMA in plan.stream_kinds and plan.lima_mode(d.lima_info or {}) == LimaMode.COPY
            return StreamKind.LIMA_COPY if copy else StreamKind.LIMA
        if d.kind == "scan" and d.plugin == "scan_sequence":
            return StreamKind.SCAN
        raise NotImplementedError(f"Stream not supported: {d.name} (kind={d.kind}, plugin={d.plugin})")

    def _refresh_lengths(self) -> None:
        """Row streams and Lima2 / Mosca channels: one pipelined round trip each; the others: per
        kind (`_follow`)."""
        rows = [n for n, p in self.streams.items() if p.kind == StreamKind.ARRAY and not p.sealed]
        for name, (available, sealed) in self.source.lengths(rows).items():
            p = self.streams[name]
            if not available and not sealed:
                if p.available:
                    raise ScanGone(f"the data of stream {name} is gone from Redis (Redis restarted or data expired)")
                continue
            p.available, p.sealed = available, sealed
        self.plugins.refresh(self.streams)
        for p in self.streams.values():
            follow = self._follow.get(p.kind)
            if follow is not None and not p.sealed:
                follow(p)

    def _follow_references(self, p: StreamProgress) -> None:
        """Lima (frames reported so far) and scan-sequence streams: nothing to copy, just follow."""
        p.available, p.sealed = self.source.reference_length(p.name)
        p.written = p.submitted = p.available

    def _follow_lima_copy(self, p: StreamProgress) -> None:
        """Frames are copied once Lima closed their file."""
        p.reported, p.available, p.sealed = self.source.lima_saved(p.name)

    def _link_lima_groups(self, plan: FilePlan) -> bool:
        """Lima streams: their group (and VDS placeholder links) once the first frame is reported."""
        linked = False
        for p in self.streams.values():
            if p.kind == StreamKind.LIMA and p.available and not p.linked:
                mode = plan.lima_mode(self.lima_infos.get(p.name) or {})
                nodes = plan.group_node(p.name) if mode == LimaMode.NONE else \
                    plan.dataset_nodes(p.name, measurement=mode != LimaMode.URIS)
                self.channel.call(st.Tree(self.key, nodes))
                p.linked = linked = True
        return linked

    def _submit_rows(self, plan: FilePlan) -> bool:
        """The due rows of every row stream in one step; a dataset's links follow its first rows."""
        def spec_of(p: StreamProgress) -> st.ArraySpec:
            if p.name in self.plugins:
                return self.plugins.spec(plan, p.name)
            return plan.array_spec(p.name, *self.source.dtype_shape(p.name))

        submitted = self.rows.submit_due(list(self.streams.values()), spec_of, self._rows_source)
        for p in submitted:
            if not p.linked:
                self.channel.call(st.Tree(self.key, plan.dataset_nodes(p.name)))
                p.linked = True
        return bool(submitted)

    def _rows_source(self, p: StreamProgress, stop: int) -> st.RowsSource:
        if p.name in self.plugins:  # Lima2 / Mosca: runs of their files
            return self.plugins.source(p, stop)
        if p.kind == StreamKind.LIMA_COPY:
            return st.FileFramesSource(p.name, p.submitted, self.source.frame_refs(p.name, p.submitted, stop))
        return st.StreamSource(self.redis_url, self.key, p.name)

    def _check_all_copied(self) -> None:
        """Frames Lima reported but never saved cannot be copied: say so rather than truncate silently."""
        for p in self.streams.values():
            if p.kind == StreamKind.LIMA_COPY and p.written < p.reported:
                raise RuntimeError(f"{p.name}: Lima reported {p.reported} frames but saved only "
                                   f"{p.written}: the missing frames cannot be copied")

    def _report_backlog(self) -> None:
        if self.backlog_bytes() > 4 * self.rows.step_bytes:
            self.warning = (f"writing is {self.backlog()} points behind the publisher "
                            "(data waits in Redis; add ranks or use a faster compression)")
            log.warning("scan %s: %s", self.name, self.warning)
        else:
            self.warning = ""
        self.warning = "; ".join(w for w in (self.warning, self.plugins.warning) if w)

    def _add_warning(self, text: str) -> None:
        """A channel's warning, shown at once (scan_info / scan_progress)."""
        if text not in self.warning:
            self.warning = "; ".join(w for w in (self.warning, text) if w)
