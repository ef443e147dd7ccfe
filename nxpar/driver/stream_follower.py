"""RANK 0 ONLY: the streams of one scan, followed for its `ScanDriver` (which owns the flow).

Owns what each stream is (`StreamKind`, or a `PluginMode` for Lima2 / Mosca channels), how far it is
published (row streams: lengths of all in one pipelined round trip; Lima references, Lima copies and
Lima2 / Mosca channels each their own way), what is due (Lima groups once their first frame is
reported, Lima2 / Mosca links, the due rows of every row stream in one step with the links of a
dataset after its first rows) and the backlog. Lima files are checked against the allowed roots
(path_checks.py) before their frames are linked or copied: a stream whose files are outside is refused
(a warning, the scan goes on). Never touches HDF5: steps go through the WriterChannel; row batching and
back-pressure are in row_writes.py, Lima2 / Mosca in plugin_streams.py.
"""
from __future__ import annotations

import logging
import time

from ..nexus.file_plan import FilePlan, StreamKind
from ..nexus.lima_plan import LimaMode
from ..protocol import steps as st
from .path_checks import DetectorFiles, policy_of
from .plugin_streams import PluginStreams, is_plugin_kind
from .row_writes import RowWrites, StreamProgress
from .scan_source import ScanGone, ScanSource, StreamDescription
from .writer_channel import WriterChannel

log = logging.getLogger("nxpar.scan")

# Stream lengths are asked at least this often (seals, scalars), and at every loop while fewer rows are
# known than the next steps can take (RowWrites.knows_enough).
LENGTHS_MAX_AGE_S = 0.25


class StreamFollower:
    """The streams of one scan: their kinds, how far each is published, linked and written."""

    def __init__(self, source: ScanSource, redis_url: str, channel: WriterChannel, rows: RowWrites,
                 plugins: PluginStreams) -> None:
        self.source = source
        self.name: str = source.info["name"]
        self.key: str = source.key
        self.redis_url = redis_url
        self.channel = channel
        self.rows = rows
        self.plugins = plugins
        self.streams: dict[str, StreamProgress] = {}
        self.lima_infos: dict[str, dict] = {}
        self.files = DetectorFiles(policy_of(None))  # the plan's allowed roots once classified
        self._lengths_at = time.monotonic()
        self._follow = {StreamKind.LIMA: self._follow_references, StreamKind.SCAN: self._follow_references,
                        StreamKind.LIMA_COPY: self._follow_lima_copy}

    # -- the streams of the plan -----------------------------------------------------------------------
    def classify(self, plan: FilePlan) -> None:
        """The kind of every stream the plan wants; an unknown or unsupported stream FAULTs the scan."""
        self.files = self.plugins.files = DetectorFiles(policy_of(plan))
        for d in self.source.streams():
            if not plan.wants(d.name):
                continue  # an h5map that does not mention the stream
            plan.entry_of(d.name)  # KeyError naming the stream: not in the acquisition chain
            plugin_kind = self.plugins.classify(d, plan)  # Lima2 / Mosca (plugin_streams.py)
            if plugin_kind is not None:
                self.streams[d.name] = StreamProgress(d.name, plugin_kind)
                continue
            kind = stream_kind(d, plan)
            if kind not in plan.stream_kinds:
                raise NotImplementedError(f"Stream {d.name} ({kind.value}) cannot be written as a dataset of the "
                                          "h5map: map Lima frames as a virtual or external dataset")
            self.streams[d.name] = StreamProgress(d.name, kind)
            if d.lima_info is not None:
                self.lima_infos[d.name] = d.lima_info
                self._check_lima_template(self.streams[d.name], d.lima_info)
        self._lengths_at = time.monotonic()

    def all_done(self) -> bool:
        return all(p.done for p in self.streams.values())

    # -- how far each stream is published --------------------------------------------------------------
    def refresh_lengths_when_due(self) -> None:
        """The lengths, when last asked LENGTHS_MAX_AGE_S ago or fewer rows are known than the next
        steps can take."""
        if time.monotonic() - self._lengths_at >= LENGTHS_MAX_AGE_S or \
                not self.rows.knows_enough(list(self.streams.values())):
            self.refresh_lengths()
            self._lengths_at = time.monotonic()

    def refresh_lengths(self) -> None:
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
            if follow is not None and not p.sealed and not p.given_up:
                follow(p)

    def _follow_references(self, p: StreamProgress) -> None:
        """Lima (frames reported so far) and scan-sequence streams: nothing to copy, just follow (Lima
        files checked as their frames are reported: finalisation.py links them at the end)."""
        available, sealed = self.source.reference_length(p.name)
        if p.kind == StreamKind.LIMA and available > p.available and not self._lima_files_allowed(p, available):
            return
        p.available, p.sealed = available, sealed
        p.written = p.submitted = p.available

    def _follow_lima_copy(self, p: StreamProgress) -> None:
        """Frames are copied once Lima closed their file (inside the allowed roots)."""
        reported, available, sealed = self.source.lima_saved(p.name)
        if available > p.available and not self._lima_files_allowed(p, available):
            return
        p.reported, p.available, p.sealed = reported, available, sealed

    # -- Lima files inside the allowed roots -----------------------------------------------------------
    def _check_lima_template(self, p: StreamProgress, lima_info: dict) -> None:
        """Where Lima saves (its first file), checked once the stream is known: outside, refused at once."""
        template = lima_info.get("file_path")
        if template is None:
            return  # not saved: nothing to read or link
        try:
            first = str(template) % int(lima_info.get("file_offset") or 0)
        except (TypeError, ValueError):
            first = str(template)
        reason = self.files.refusal([first])
        if reason:
            self.plugins.refuse(p, f"Lima files: {reason}")

    def _lima_files_allowed(self, p: StreamProgress, available: int) -> bool:
        """The files of frames [p.available, available): inside the roots, else the stream is refused
        (the frames before stay)."""
        if "file_path" not in (self.lima_infos.get(p.name) or {}):
            return True
        try:
            refs = self.source.frame_refs(p.name, p.available, available)
        except Exception as e:  # linked frames: checked again at the end (finalisation.py); copies: read errors FAULT
            if p.kind == StreamKind.LIMA_COPY:
                raise
            log.debug("scan %s: %s: Lima references not known yet (%s)", self.name, p.name, e)
            return True
        reason = self.files.refusal(ref[1] for ref in refs)
        if reason:
            self.plugins.refuse(p, f"Lima files: {reason}")
        return not reason

    # -- what is due -------------------------------------------------------------------------------------
    def send_due(self, plan: FilePlan) -> bool:
        """Lima groups, Lima2 / Mosca groups and growing VDS, then the due rows: whether a step was sent."""
        wrote = self._link_lima_groups(plan)
        wrote |= self.plugins.link(plan, self.streams)
        wrote |= self._submit_rows(plan)
        return wrote

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
        first = [p for p in submitted if not p.linked]
        if first:  # one step for all, not waited for (a call per stream made a short scan's end ~10 ms
            # per stream longer): the writers run it after the rows; its answer is checked with theirs
            self.rows.submit_following(st.Tree(self.key, [n for p in first for n in plan.dataset_nodes(p.name)]))
            for p in first:
                p.linked = True
        return bool(submitted)

    def _rows_source(self, p: StreamProgress, stop: int) -> st.RowsSource:
        if p.name in self.plugins:  # Lima2 / Mosca: runs of their files
            return self.plugins.source(p, stop)
        if p.kind == StreamKind.LIMA_COPY:
            return st.FileFramesSource(p.name, p.submitted, self.source.frame_refs(p.name, p.submitted, stop))
        return st.StreamSource(self.redis_url, self.key, p.name)

    def check_all_copied(self) -> None:
        """Frames Lima reported but never saved cannot be copied: say so rather than truncate silently."""
        for p in self.streams.values():
            if p.kind == StreamKind.LIMA_COPY and p.written < p.reported and not p.given_up:
                raise RuntimeError(f"{p.name}: Lima reported {p.reported} frames but saved only "
                                   f"{p.written}: the missing frames cannot be copied")

    # -- the backlog -------------------------------------------------------------------------------------
    def backlog(self) -> int:
        """Points published but not yet written (the slowest stream): back-pressure made visible."""
        return max((p.available - p.written for p in self.streams.values() if p.kind in (StreamKind.ARRAY, StreamKind.LIMA_COPY)),
                   default=0)

    def backlog_bytes(self) -> int:
        return sum((p.available - p.written) * p.spec.row_nbytes for p in self.streams.values()
                   if p.spec is not None and not p.given_up)

    def progress(self, plan: FilePlan) -> dict[str, dict[str, int]]:
        """{entry: {dataset: points written}} of the streams written as datasets (scan_progress)."""
        out: dict[str, dict[str, int]] = {}
        for p in self.streams.values():
            if p.kind != StreamKind.SCAN and (p.spec is not None or p.kind == StreamKind.LIMA or is_plugin_kind(p.kind)):
                out.setdefault(plan.entry_of(p.name), {})[p.name] = p.written
        return out

    def backlog_warning(self) -> str:
        """The scan's warning: writing behind the publisher (logged), and the Lima2 / Mosca channels'."""
        warning = ""
        if self.backlog_bytes() > 4 * self.rows.step_bytes:
            warning = (f"writing is {self.backlog()} points behind the publisher "
                       "(data waits in Redis; add ranks or use a faster compression)")
            log.warning("scan %s: %s", self.name, warning)
        return "; ".join(w for w in (warning, self.plugins.warning) if w)


def stream_kind(d: StreamDescription, plan: FilePlan) -> StreamKind:
    """blissdata's (kind, plugin) → how nxpar follows the stream."""
    if d.kind == "array" and d.plugin in (None, "hdf5_fallback"):
        return StreamKind.ARRAY
    if d.kind == "array" and d.plugin == "lima":
        copy = StreamKind.LIMA in plan.stream_kinds and plan.lima_mode(d.lima_info or {}) == LimaMode.COPY
        return StreamKind.LIMA_COPY if copy else StreamKind.LIMA
    if d.kind == "scan" and d.plugin == "scan_sequence":
        return StreamKind.SCAN
    raise NotImplementedError(f"Stream not supported: {d.name} (kind={d.kind}, plugin={d.plugin})")
