"""RANK 0 ONLY: how a scan's file ends, whatever ended the scan. Every ending writes a status, an end
time and a reason into each entry:

* finished: the final nodes (Lima VDS, plots, end_reason, end_time, status SUCCEEDED);
* failed while writing, stopped, stale, rows not as declared: the final nodes with status FAILED and
  `writer/failure`;
* the final nodes cannot be made or written (an error while finalising, a disk filled by another
  process): the bare ending (status FAILED, the reason, end_time);
* killed (`kill_scan`): the bare ending at once;
* the file itself is gone (deleted while written): the file is made again at its path with the bare
  ending of each entry, so that the path says what happened (nothing else of it is touched when
  another file took its place).

A scan written again after an interruption (resume.py) also gets `writer/interruption`.
"""
from __future__ import annotations

import logging
import os
from typing import Any

from ..nexus.file_plan import FilePlan, StreamKind
from ..nexus.nodes import failed_nodes, failure_nodes, note_nodes
from ..nexus.scan_info import now_iso
from ..protocol import steps as st
from .finalisation import grid_axis_values, reference_nodes
from .path_checks import nodes_inside
from .resume import Interruption
from .writer_channel import StepError

log = logging.getLogger("nxpar.scan")

KILLED = "Killed: writing stopped without finalisation, the file may be incomplete"
SHUTDOWN = "Stop requested: the writer service stopped; its next run writes the scan again from Redis"


class StopRequested(RuntimeError):
    pass


class DataMismatch(RuntimeError):
    """Rows of a channel are not what the channel declares: not written, the scan FAULTs."""


class ScanEnding:
    """The end of one scan's file: told the plan, the scan's source, its streams and its plugins."""

    def __init__(self, driver: Any) -> None:
        self.driver = driver  # a ScanDriver: key, channel, source, streams, lima_infos, plugins, name

    @property
    def channel(self):
        return self.driver.channel

    def finalise(self, plan: FilePlan, failure: BaseException | None, interruption: Interruption | None
                 ) -> BaseException | None:
        """The final nodes; if they cannot be made or written, the bare ending. Returns the failure the
        scan ends with (the first one)."""
        try:
            self.channel.call(st.Tree(self.driver.key, self._final_nodes(plan, failure, interruption)))
            return failure
        except Exception as e:
            log.warning("scan %s: finalising failed: %s", self.driver.name, e)
            reason = f"{failure}; finalising failed: {e}" if failure is not None else f"finalising failed: {e}"
            self.bare_ending(plan, reason)
            return failure or RuntimeError(reason)

    def _final_nodes(self, plan: FilePlan, failure: BaseException | None, interruption: Interruption | None
                     ) -> list[st.Node]:
        d = self.driver
        if not isinstance(failure, StepError):
            d.source.refresh()
        streams = list(d.streams.values())
        written = {p.name: p.written for p in streams if p.written and p.kind != StreamKind.SCAN}  # rows
        nodes = reference_nodes(plan, d.source, streams, d.lima_infos)
        nodes += d.plugins.final_nodes(plan, d.streams)  # Lima2 / Mosca: last VDS, copy warnings
        final, refused = nodes_inside(plan.final_nodes(d.source.final_info(), failure is not None, written,
                                                       grid_axis_values(plan, d.source, d.streams, d.name)),
                                      plan.filename, d.options.paths)  # an h5map completed at the end: re-checked
        nodes += final
        for reason in refused:
            log.warning("scan %s: %s", d.name, reason)
        if failure is not None:
            nodes += failure_nodes(plan.entry_names, reason_of(failure))
        if interruption is not None:
            rows = sum(p.written for p in streams if p.kind != StreamKind.SCAN)
            nodes += note_nodes(plan.entry_names, "interruption", interruption.describe(rows))
        return nodes

    def bare_ending(self, plan: FilePlan, reason: str) -> bool:
        """Status FAILED, the reason and end_time only; False if even that could not be written."""
        try:
            self.channel.call(st.Tree(self.driver.key, failed_nodes(plan.entry_names, reason)))
            return True
        except Exception as e:
            log.error("scan %s: the file's FAILED status could not be written: %s", self.driver.name, e)
            return False

    def close(self, plan: FilePlan, failure: BaseException | None) -> BaseException | None:
        """The scan lets its file go; if the file is gone from its path, it is made again with the bare
        ending. Returns the error closing met (None: closed)."""
        try:
            self.channel.call(st.CloseFile(self.driver.key))
            return None
        except Exception as e:
            if not os.path.exists(plan.filename):
                self._record_at_path(plan, reason_of(failure) if failure is not None else str(e))
            return e

    def _record_at_path(self, plan: FilePlan, reason: str) -> None:
        try:
            self.channel.call(st.MarkFailed(plan.filename, plan.entry_names, reason, now_iso(), create_missing=True))
        except Exception as e:
            log.error("scan %s: %s could not be made again to say FAILED: %s", self.driver.name, plan.filename, e)


def reason_of(failure: BaseException) -> str:
    return str(failure) or type(failure).__name__
