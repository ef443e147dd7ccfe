"""RANK 0 ONLY: one thread per scan. Follows the blissdata scan, plans the file, drives the writers.

States (spec §2.7): INIT → ON → OFF | FAULT. The thread never touches HDF5 or MPI itself: every
file operation is a step sent through the WriterChannel, so all writer ranks apply it together.
Bulk data is not read here: the thread only watches stream lengths (one pipelined Redis round
trip for all streams) and tells the writers which rows to fetch.
"""
from __future__ import annotations

import collections
import datetime
import logging
import math
import threading
import time
import warnings
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from blissdata.exceptions import ScanNotFoundError
from blissdata.redis_engine.scan import Scan, ScanState
from blissdata.streams.event_stream import StreamEntry

from .. import steps as st
from ..disk import free_mb
from ..lima_files import edf_blocks, edf_byteorder
from ..nexus.h5map_plan import H5MapPlan, has_h5map
from ..nexus.plan import SaveOptions, ScanPlan, saving_enabled
from ..redis_retry import call_with_backoff
from .journal import Journal
from .plugin_streams import COPIED_KINDS, PluginStreams, is_plugin_kind  # issue 13: Lima2 / Mosca
from .profiling import PROFILER
from .writer_channel import StepError, WriterChannel

log = logging.getLogger("nxpar.scan")

REASON_RUNNING = "Subscribed to Redis"  # same text as the session (blisswriter quirk kept)
REASON_DONE = "Finished succesfully"  # sic: BLISS users know this string


def lima_frames_readable(stream: Any) -> int:
    """Frames of a Lima stream that lie in files Lima has closed (all saved ones once sealed).

    blissdata's Lima client works this out from the status events and the file layout; it keeps
    it private, hence the getattr (blissdata is pinned to 2.4.x).
    """
    len(stream)  # refreshes the client from the last status event
    return int(getattr(stream._client, "_last_index_saved_and_closed", -1)) + 1


def _frame_ref(ref: Any) -> tuple[str, str, str, int]:
    """blissdata ImageReference → the plain tuple the writer ranks get."""
    return (str(ref.format), str(ref.file_path), str(ref.data_path or ""), int(ref.index))


MAX_INFLIGHT = 2  # row-writing steps of one scan submitted and not yet completed


class StopRequested(RuntimeError):
    pass


def rows_due(submitted: int, available: int, rows_per_chunk: int, row_nbytes: int, budget_bytes: int,
             flush_all: bool, min_bytes: int = 0) -> int:
    """End (exclusive) of the rows of a stream to write now, from `submitted` on.

    Nothing while less than `min_bytes` is pending (a step has a fixed cost: kHz rows of a few
    bytes are gathered for up to the max delay); at most `budget_bytes` (but at least one chunk),
    cut at a chunk boundary when the budget cuts; a partly filled last chunk only when
    `flush_all` (sealed stream or max delay reached): with filters every write of a partial chunk
    recompresses it, so small rows wait for their chunk, for a bounded time.
    """
    if available <= submitted or (not flush_all and (available - submitted) * row_nbytes < min_bytes):
        return submitted
    max_rows = max(budget_bytes // max(row_nbytes, 1), 1)
    max_rows = max(max_rows // rows_per_chunk * rows_per_chunk, rows_per_chunk)
    limit = submitted + max_rows
    if limit < available:
        aligned = limit // rows_per_chunk * rows_per_chunk
        return aligned if aligned > submitted else limit
    if flush_all:
        return available
    return max(available // rows_per_chunk * rows_per_chunk, submitted)


@dataclass
class Tuning:
    """How row writes are cut into steps: by bytes (memory per writer rank) and by time (how long
    rows may wait for their chunk to fill), never by a row count that ignores what a row weighs."""

    flush_period_s: float = 0.5
    step_bytes_per_writer: int = 16 << 20  # data each writer rank reads and holds per step
    min_step_bytes_per_writer: int = 1 << 20  # less than this waits (up to max_delay_s) for more rows
    poll_period_s: float = 0.02
    disk_check_period_s: float = 3.0
    redis_retry_s: float = 20.0  # Redis unreachable longer than this: scan FAULT

    @property
    def min_step_bytes(self) -> int:
        return min(self.min_step_bytes_per_writer, self.step_bytes_per_writer)

    def describe(self) -> str:
        return (f"steps of {self.step_bytes_per_writer >> 10} KiB per writer rank (at least "
                f"{self.min_step_bytes >> 10} KiB or {self.max_delay_s:g} s), flush every {self.flush_period_s:g} s")
    max_delay_s: float = 0.5  # rows of a partly filled chunk are written at least this often


@dataclass
class StreamProgress:
    name: str
    kind: str
    spec: st.ArraySpec | None = None
    available: int = 0
    written: int = 0
    submitted: int = 0  # rows sent to the writers (written once their step completed)
    sealed: bool = False
    reported: int = 0  # lima_copy: frames Lima reported (available = frames saved in closed files)
    linked: bool = False  # groups/links of its dataset written
    last_write: float = field(default_factory=time.monotonic)


Plan = ScanPlan | H5MapPlan


def make_plan(info: dict[str, Any], options: SaveOptions, blissdata_version: str) -> Plan:
    """The publisher's own file map when it sent one (newer blissdata), else the spec §4 tree."""
    if has_h5map(info):
        return H5MapPlan(info, options, blissdata_version)
    return ScanPlan(info, options, blissdata_version)


class ScanWriter:
    def __init__(self, scan: Scan, redis_url: str, options: SaveOptions, channel: WriterChannel,
                 tuning: Tuning | None = None, blissdata_version: str = "", journal: Journal | None = None,
                 plan_factory: Callable[[dict[str, Any], SaveOptions, str], Plan] | None = None) -> None:
        self.scan = scan
        self.name: str = scan.info["name"]
        self.key: str = scan.key
        self.redis_url = redis_url
        self.options = options
        self.channel = channel
        self.tuning = tuning or Tuning()
        self.blissdata_version = blissdata_version
        self.journal = journal
        self.plan_factory = plan_factory or make_plan  # the mapping route requires an h5map (mapping_route.py)
        self.profiling = "OFF"  # resource_profiling mode when the writer was created
        self.state = "INIT"
        self.reason = "instantiation"
        self.created = time.time()
        self.start_time: float | None = None
        self.end_time: float | None = None
        self.plan: Plan | None = None
        self.streams: dict[str, StreamProgress] = {}
        self.bytes_written = 0
        self.warning = ""
        self.timeline: dict[str, float] = {}
        self._inflight: collections.deque[tuple[list[StreamProgress], st.WriteBatch, Future]] = collections.deque()
        self._stop = threading.Event()
        self._killed = threading.Event()
        self._thread = threading.Thread(target=self._profiled_run, name=f"scan-{self.name}", daemon=True)
        self.plugins = PluginStreams(self)  # issue 13: Lima2 / Mosca channels

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

    @property
    def filename(self) -> str | None:
        """The scan file: from the plan, or from the CREATED scan_info before PREPARED."""
        if self.plan is not None:
            return self.plan.filename
        info = self.scan.info
        name = info.get("filename") if isinstance(info, dict) else None
        return name if isinstance(name, str) and name else None

    @property
    def urls(self) -> list[str]:
        return self.plan.urls() if self.plan else []

    def backlog(self) -> int:
        """Points published but not yet written (the slowest stream): back-pressure made visible."""
        return max((p.available - p.written for p in self.streams.values() if p.kind in ("array", "lima_copy")),
                   default=0)

    def backlog_bytes(self) -> int:
        return sum((p.available - p.written) * p.spec.row_nbytes for p in self.streams.values()
                   if p.spec is not None)

    def published(self) -> int:
        return max((p.available for p in self.streams.values()), default=0)

    def progress(self) -> dict[str, dict[str, int]]:
        """{entry: {dataset: points written}} for scan_progress."""
        out: dict[str, dict[str, int]] = {}
        if self.plan is None:
            return out
        for p in self.streams.values():
            if p.kind != "scan" and p.name in self.plan.channels and (p.spec is not None or p.kind == "lima"
                                                                      or is_plugin_kind(p.kind)):  # issue 13
                out.setdefault(self.plan.channels[p.name].entry, {})[p.name] = p.written
        return out

    # -- the thread ----------------------------------------------------------------------------
    def _set(self, state: str, reason: str) -> None:
        self.state, self.reason = state, reason

    def _profiled_run(self) -> None:
        with PROFILER.profile(self.profiling, self.name):
            self._run()

    def _run(self) -> None:
        self.start_time = time.time()
        self._set("ON", REASON_RUNNING)
        opened = False
        final = ("FAULT", "internal error")
        try:
            self._wait_for(ScanState.PREPARED)
            info = self.scan.info
            if not saving_enabled(info, self.options.writer_name):
                log.info("%s: saving is disabled", self.name)
                final = ("OFF", REASON_DONE)
                return
            self._mark("prepared")
            self.plan = plan = self.plan_factory(info, self.options, self.blissdata_version)
            self._check_disk(plan.filename)
            self.channel.call(st.OpenFile(self.key, plan.filename, plan.root_attrs(), plan.entry_names))
            opened = True
            if self.journal is not None:
                self.journal.add(self.key, self.name, plan.filename, plan.entry_names)
            self.channel.call(st.Tree(self.key, plan.skeleton()))
            for path, nodes in plan.master_links().items():
                self.channel.call(st.LocalFile(self.key, path, {"NX_class": "NXroot", "creator": "nxpar"}, nodes))
            self.channel.call(st.Tree(self.key, plan.running()))
            failure: BaseException | None = None
            try:
                self._read_loop(plan)
                self._mark("data written")
                self._wait_for(ScanState.CLOSED)
                self._mark("CLOSED")
            except BaseException as e:  # finalise whatever happened, then report it
                failure = e
                self._wait_writes(ignore_errors=True)
            if self._killed.is_set():
                reason = "Killed: writing stopped without finalisation, the file may be incomplete"
                self.channel.call(st.Tree(self.key, plan.failed_nodes(reason)))  # the file says so
                raise StopRequested(reason)
            try:
                if not isinstance(failure, StepError):
                    self.scan_info_refresh()
                written = {p.name for p in self.streams.values() if p.written and p.kind != "scan"}
                self.channel.call(st.Tree(self.key, self._reference_nodes(plan) +
                                          plan.final_nodes(self._final_info(), failure is not None, written,
                                                           self._grid_axis_values(plan))))
            except Exception as e:
                failure = failure or e
            self._mark("finalised")
            if failure is not None:
                raise failure
        except Exception as e:
            log.warning("scan %s FAULT: %s", self.name, e, exc_info=log.isEnabledFor(logging.DEBUG))
            final = ("FAULT", str(e) or type(e).__name__)
        else:
            final = ("OFF", REASON_DONE)
        finally:
            # the state changes only once the file is closed: OFF means "complete on disk"
            if opened:
                try:
                    self.channel.call(st.CloseFile(self.key))
                except Exception as e:
                    if final[0] != "FAULT":
                        final = ("FAULT", f"closing the file failed: {e}")
            if opened and self.journal is not None:
                self.journal.remove(self.key)
            if opened:
                self._mark("file closed")
                log.info("scan %s: %s", self.name, self.timeline_str())
            self.end_time = time.time()
            self._set(*final)

    def _mark(self, event: str) -> None:
        self.timeline[event] = time.monotonic()

    def timeline_str(self) -> str:
        """When each phase ended, from PREPARED: where the time between scan end and file closed goes."""
        t0 = self.timeline.get("prepared")
        if t0 is None:
            return ""
        return ", ".join(f"{event} +{t - t0:.2f}s" for event, t in self.timeline.items() if event != "prepared")

    def scan_info_refresh(self) -> None:
        """Non-blocking: pick up a newer scan state/info if one was published."""
        try:
            self.scan.update(block=False)
        except Exception:
            pass

    def _grid_axis_values(self, plan: Plan) -> dict[str, Any]:
        """keepshape plots: each mesh motor's positions averaged over the other grid dimensions
        (small scalar streams, read here on rank 0 at finalisation). Never fails the finalisation."""
        values: dict[str, Any] = {}
        try:
            self._average_positions(plan, values)
        except Exception as e:
            log.warning("scan %s: no plot axes: %s", self.name, e)
        return values

    def _average_positions(self, plan: Plan, values: dict[str, Any]) -> None:
        for names in plan.grid_axes().values():
            for dim, name in enumerate(names):
                p = self.streams.get(name)
                if p is None or not p.written:
                    continue
                grid = list(plan.grid)
                grid[0] = max(grid[0], -(-p.written // math.prod(grid[1:])))
                positions = np.full(math.prod(grid), np.nan)
                positions[:p.written] = np.asarray(self.scan.streams[name][:p.written], dtype=float)
                others = tuple(d for d in range(len(grid)) if d != dim)
                with np.errstate(invalid="ignore"), warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows of an aborted mesh
                    values[name] = np.nanmean(positions.reshape(grid), axis=others)

    def _final_info(self) -> dict[str, Any]:
        return dict(self.scan.info) if self.scan.state >= ScanState.CLOSED else {}

    def _wait_for(self, state: ScanState) -> None:
        while self.scan.state < state:
            if self._stop.is_set():
                raise StopRequested("Stop requested")
            try:
                self._redis_call(self.scan.update, timeout=0.5)
            except ScanNotFoundError as e:
                raise RuntimeError(f"the scan is gone from Redis ({e})") from e

    def _check_disk(self, filename: str) -> None:
        required = self.options.required_disk_space
        if required > 0:
            free = free_mb(filename)
            if free is not None and free < required:
                raise RuntimeError(f"Free disk space below {required:.0f} MB")

    # -- read loop -------------------------------------------------------------------------------
    def _classify(self, plan: Plan) -> None:
        """array: rows written by the writer ranks; lima: VDS/references at the end; scan: child links."""
        for name, stream in self.scan.streams.items():
            if not plan.wants(name):
                continue  # an h5map that does not mention the stream
            plan.channel(name)  # KeyError → FAULT with a clear reason (spec §3.4)
            plugin_kind = self.plugins.classify(name, stream, plan)  # issue 13: Lima2 / Mosca
            if plugin_kind is not None:
                self.streams[name] = StreamProgress(name, plugin_kind)
                continue
            plugin = getattr(stream, "plugin", None)
            kind = getattr(stream, "kind", None)
            if kind == "array" and plugin in (None, "hdf5_fallback"):
                ours = "array"
            elif kind == "array" and plugin == "lima":
                ours = "lima"
                if ours in plan.stream_kinds and plan.lima_mode(stream.info["lima_info"]) == "copy":
                    ours = "lima_copy"
            elif kind == "scan" and plugin == "scan_sequence":
                ours = "scan"
            else:
                raise NotImplementedError(f"Stream not supported: {name} (kind={kind}, plugin={plugin})")
            if ours not in plan.stream_kinds:
                raise NotImplementedError(f"Stream {name} ({ours}) cannot be written as a dataset of the h5map: "
                                          "map Lima frames as a virtual or external dataset")
            self.streams[name] = StreamProgress(name, ours)

    def _reference_lengths(self) -> None:
        """Lima (frames reported so far) and scan-sequence streams: nothing to copy, just follow them."""
        self.plugins.refresh(self.streams)  # issue 13: Lima2 / Mosca, from their raw events
        for p in self.streams.values():
            if p.kind == "array" or p.sealed or p.name in self.plugins:
                continue
            stream = self.scan.streams[p.name]
            sealed = stream.event_stream.is_sealed()
            if p.kind == "lima_copy":  # frames are copied once Lima closed their file
                p.reported = len(stream)
                p.available = lima_frames_readable(stream)
                p.sealed = sealed
                continue
            p.available = len(stream)
            p.written = p.submitted = p.available
            p.sealed = sealed

    def _reference_nodes(self, plan: Plan) -> list:
        """Finalisation: Lima frames as VDS/references, links to the children of a sequence."""
        nodes = []
        for p in self.streams.values():
            if p.name in self.plugins:  # issue 13
                continue
            stream = self.scan.streams[p.name]
            if p.kind == "lima" and p.available and plan.lima_mode(stream.info["lima_info"]) != "none":
                refs = stream.get_references(slice(0, p.available))
                dtype, blocks = stream.dtype.name, None
                if plan.lima_mode(stream.info["lima_info"]) == "external":  # EDF: where each frame's data is
                    shape = tuple(stream.shape)
                    blocks = edf_blocks([_frame_ref(r) for r in refs], stream.dtype.itemsize * math.prod(shape))
                    dtype = stream.dtype.newbyteorder(edf_byteorder(refs[0].file_path)).str
                nodes += plan.lima_nodes(p.name, refs, dtype, tuple(stream.shape), stream.info["lima_info"], blocks)
            elif p.kind == "scan" and p.available:
                keys = [event["key"] for event in stream.event_stream[0:p.available]]
                children = [self.scan._data_store.load_scan(k).info for k in keys]
                nodes += plan.sequence_nodes(children)
        return nodes + self.plugins.final_nodes(plan, self.streams)  # issue 13: Lima2 / Mosca

    def _lengths(self) -> None:
        """One pipelined round trip: published length and seal of every stream."""
        redis = self.scan._data_store._redis
        names = [n for n, p in self.streams.items() if not p.sealed and p.kind == "array"]
        if not names:
            return
        pipe = redis.pipeline(transaction=False)
        for n in names:
            pipe.xrevrange(self.scan.streams[n].key, count=1)
        for n, raw in zip(names, self._redis_call(pipe.execute)):
            p = self.streams[n]
            if raw:
                entry = StreamEntry.from_raw(raw[0])
                p.available = entry.id + entry.length
                p.sealed = entry.is_seal
            elif p.available:
                raise RuntimeError(f"the data of stream {n} is gone from Redis (Redis restarted or data expired)")

    def _redis_call(self, func, *args, **kwargs):
        """Redis errors are retried with back-off (reconnecting) for `redis_retry_s`, then FAULT."""
        def stop_if_requested() -> None:
            if self._stop.is_set():
                raise StopRequested("Stop requested")

        return call_with_backoff(lambda: func(*args, **kwargs), f"scan {self.name}", self.tuning.redis_retry_s,
                                 stop_if_requested)

    def _read_loop(self, plan: Plan) -> None:
        self._classify(plan)
        last_flush = last_disk = time.monotonic()
        dirty = False
        while True:
            if self._stop.is_set():
                raise StopRequested("Stop requested")
            self._wait_for_room()
            self._lengths()
            self._reference_lengths()
            wrote = self._link_references(plan)
            wrote |= self.plugins.link(plan, self.streams)  # issue 13: Lima2 / Mosca VDS
            wrote |= self._submit_due(plan)
            dirty |= wrote
            now = time.monotonic()
            if dirty and now - last_flush >= self.tuning.flush_period_s:
                self.channel.call(st.Flush(self.key))
                last_flush, dirty = now, False
            if now - last_disk >= self.tuning.disk_check_period_s:
                self._check_disk(plan.filename)
                self._report_backlog()
                last_disk = now
            if all(p.sealed and p.submitted >= p.available for p in self.streams.values()):
                self._wait_writes()
                if dirty:
                    self.channel.call(st.Flush(self.key))
                self._check_all_copied()
                return
            if not wrote:
                time.sleep(self.tuning.poll_period_s)

    def _link_references(self, plan: Plan) -> bool:
        """Lima streams: their group (and VDS placeholder links) once the first frame is reported."""
        linked = False
        for p in self.streams.values():
            if p.kind == "lima" and p.available and not p.linked:
                lima_mode = plan.lima_mode(self.scan.streams[p.name].info["lima_info"])
                nodes = plan.group_node(p.name) if lima_mode == "none" else \
                    plan.dataset_nodes(p.name, measurement=lima_mode != "uris")
                self.channel.call(st.Tree(self.key, nodes))
                p.linked = linked = True
        return linked

    def _submit_due(self, plan: Plan) -> bool:
        """One WriteBatch with the rows that are due in every stream, within the byte budget.

        Called only when the scan has room in the pipeline, so rows that arrived while the writers
        were busy go together: the step count follows the writers' pace, not the point rate.
        Streams written longest ago come first, so none starves behind big frames.
        """
        budget = self.tuning.step_bytes_per_writer * self.channel.nwriters
        now = time.monotonic()
        writes: list[tuple[StreamProgress, st.WriteRows]] = []
        for p in sorted(self.streams.values(), key=lambda p: p.last_write):
            if p.kind not in ("array", "lima_copy", *COPIED_KINDS) or p.available <= p.submitted or budget <= 0:
                continue
            if p.spec is None:
                p.spec = self._array_spec(plan, p.name)
            stop = rows_due(p.submitted, p.available, p.spec.rows_per_chunk, p.spec.row_nbytes, budget,
                            flush_all=p.sealed or now - p.last_write >= self.tuning.max_delay_s,
                            min_bytes=self.tuning.min_step_bytes * self.channel.nwriters)
            if stop > p.submitted:
                write = st.WriteRows(p.spec, self._source(p, stop), p.submitted, stop)
                writes.append((p, write))
                budget -= write.nbytes
        if not writes:
            return False
        batch = st.WriteBatch(self.key, [w for _, w in writes])
        self._inflight.append(([p for p, _ in writes], batch, self.channel.submit(batch)))
        for p, write in writes:
            p.submitted, p.last_write = write.stop, now
        for p, _ in writes:
            if not p.linked:
                self.channel.call(st.Tree(self.key, plan.dataset_nodes(p.name)))
                p.linked = True
        return True

    def _array_spec(self, plan: Plan, name: str) -> st.ArraySpec:
        if name in self.plugins:  # issue 13: Lima2 / Mosca
            return self.plugins.spec(plan, name)
        stream = self.scan.streams[name]
        dtype = stream.dtype.name if hasattr(stream.dtype, "name") else str(stream.dtype)
        return plan.channel(name).spec(dtype, tuple(stream.shape), plan.npoints, plan.chunk_options, plan.grid)

    def _source(self, p: StreamProgress, stop: int) -> st.StreamSource | st.FileFramesSource | st.FileRunsSource:
        if p.name in self.plugins:  # issue 13: Lima2 / Mosca files
            return self.plugins.source(p, stop)
        if p.kind == "lima_copy":
            refs = [_frame_ref(r) for r in self.scan.streams[p.name].get_references(slice(p.submitted, stop))]
            return st.FileFramesSource(p.name, p.submitted, refs)
        return st.StreamSource(self.redis_url, self.key, p.name)

    def _wait_for_room(self) -> None:
        """At most MAX_INFLIGHT batches of this scan pending: the scan thread never runs far ahead."""
        self._complete()
        while len(self._inflight) >= MAX_INFLIGHT:
            self._complete(wait_oldest=True)

    def _complete(self, wait_oldest: bool = False) -> None:
        """Account for the batches that finished, oldest first; a failed one raises StepError."""
        while self._inflight and (wait_oldest or self._inflight[0][2].done()):
            progress, batch, future = self._inflight.popleft()
            result: st.StepResult = future.result()
            if not result.ok:
                raise StepError(result.error)
            for p, write in zip(progress, batch.writes):
                p.written = write.stop
            self.bytes_written += batch.nbytes
            wait_oldest = False

    def _wait_writes(self, ignore_errors: bool = False) -> None:
        """Until every pending row write completed (after a failure: ignoring theirs, keeping the rest)."""
        while self._inflight:
            try:
                self._complete(wait_oldest=True)
            except StepError:
                if not ignore_errors:
                    raise

    def _check_all_copied(self) -> None:
        """Frames Lima reported but never saved cannot be copied: say so rather than truncate silently."""
        for p in self.streams.values():
            if p.kind == "lima_copy" and p.written < p.reported:
                raise RuntimeError(f"{p.name}: Lima reported {p.reported} frames but saved only "
                                   f"{p.written}: the missing frames cannot be copied")

    def _report_backlog(self) -> None:
        behind = self.backlog()
        step_bytes = self.tuning.step_bytes_per_writer * self.channel.nwriters
        if self.backlog_bytes() > 4 * step_bytes:
            self.warning = (f"writing is {behind} points behind the publisher "
                            "(data waits in Redis; add ranks or use a faster compression)")
            log.warning("scan %s: %s", self.name, self.warning)
        else:
            self.warning = ""
        self.warning = "; ".join(w for w in (self.warning, self.plugins.warning) if w)  # issue 13

    # -- reporting ---------------------------------------------------------------------------------
    def start_str(self) -> str:
        return _fmt(self.start_time) if self.start_time else "not started"

    def end_str(self) -> str:
        return _fmt(self.end_time) if self.end_time else "not finished"

    def duration(self) -> datetime.timedelta:
        if not self.start_time:
            return datetime.timedelta(0)
        return datetime.timedelta(seconds=round((self.end_time or time.time()) - self.start_time))


def _fmt(t: float) -> str:
    return datetime.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S")

