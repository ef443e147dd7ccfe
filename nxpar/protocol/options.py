"""The device's options, in one place: what to save (`SaveOptions`) and how to cut row writes into
steps (`Tuning`). Both come from the `NexusWriter` device properties (docs/interface.md). Where scan
metadata may make nxpar write, read and link (`PathPolicy`, util/paths.py) travels with `SaveOptions`."""
from __future__ import annotations

from dataclasses import dataclass

from ..util.paths import PathPolicy


@dataclass(frozen=True)
class SaveOptions:
    """What is written and how (device properties keepshape, noconfig, *_external_*, disk space)."""

    flat: bool = True  # not keepshape: grid scans are written flat (npoints, ...)
    multivalue_positioners: bool = False
    allow_external_nonhdf5: bool = False  # EDF frames as HDF5 external datasets
    allow_external_hdf5: bool = True  # Lima HDF5 frames as a virtual dataset
    copy_non_external: bool = False  # otherwise: frames copied into the scan file
    mosca_vds: bool = False  # Mosca spectra: a VDS over Mosca's files instead of copies
    configurable: bool = True  # not noconfig: scan_info['nexuswriter'] is applied
    required_disk_space: float = 200.0  # MB: below it the scan FAULTs
    recommended_disk_space: float = 1024.0  # MB: below it a warning
    writer_name: str = "nexus"  # scan_info['data_writer'] of the scans to write
    paths: PathPolicy = PathPolicy()  # allowed_roots: every path from scan metadata is checked against it


# A scan whose state and streams do not change for this long is finalised FAILED: its publisher is gone
# (BLISS killed, a crashed session). A day: a scan may wait hours for the beam to come back (a refill,
# a machine stop) with no new point, and a wrongly failed scan costs data while a dead one costs only a
# thread and an open file. A sequence is judged by its children too (driver/scan_driver.py).
DEFAULT_STALE_SCAN_TIMEOUT_S = 86400.0


@dataclass(frozen=True)
class Tuning:
    """How row writes are cut into steps: by bytes (memory per writer rank) and by time (how long
    rows may wait for their chunk to fill), never by a row count that ignores what a row weighs."""

    flush_period_s: float = 0.5
    step_bytes_per_writer: int = 16 << 20  # data each writer rank reads and holds per step
    min_step_bytes_per_writer: int = 1 << 20  # less than this waits (up to max_delay_s) for more rows
    max_delay_s: float = 0.5  # rows of a partly filled chunk are written at least this often
    poll_period_s: float = 0.02
    disk_check_period_s: float = 3.0
    redis_retry_s: float = 20.0  # Redis unreachable longer than this: scan FAULT
    stale_scan_timeout_s: float = DEFAULT_STALE_SCAN_TIMEOUT_S  # no change in a scan this long: FAILED (0: never)

    @classmethod
    def from_properties(cls, flush_period: float, step_mb_per_writer: float, max_write_delay: float,
                        stale_scan_timeout: float = DEFAULT_STALE_SCAN_TIMEOUT_S) -> "Tuning":
        """From the device properties both Tango classes share, in their units (s, MB). The values are
        taken as they are: the accepted ranges are the property table's (nxpar/service/properties.py),
        checked where the values are read (device properties, NexusWriterBatch options), never clamped here."""
        return cls(flush_period_s=flush_period, step_bytes_per_writer=int(step_mb_per_writer * 2**20),
                   max_delay_s=max_write_delay, stale_scan_timeout_s=stale_scan_timeout)

    @property
    def min_step_bytes(self) -> int:
        return min(self.min_step_bytes_per_writer, self.step_bytes_per_writer)

    def describe(self) -> str:
        return (f"steps of {self.step_bytes_per_writer >> 10} KiB per writer rank (at least "
                f"{self.min_step_bytes >> 10} KiB or {self.max_delay_s:g} s), flush every {self.flush_period_s:g} s")
