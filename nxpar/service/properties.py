"""RANK 0 ONLY: the device properties of both Tango classes (`NexusWriter`, `BlissWriter`) in one table —
type, default, accepted range, doc — and how a device reads them from the Tango database (`ConfiguredDevice`).

A value out of its range is never changed silently. At a device's start a bad value is replaced by the
default, with a warning in the log and in the device's Status, so one bad property never stops the server;
at Tango `Init` it is refused (a DevFailed naming the property and the range) and the device keeps its
settings. `NexusWriterBatch` checks its options of the same names against the same rows (`option_type`).

Why the device reads them itself: PyTango converts properties in `get_device_properties` (called by
`init_device`); a value it cannot convert stopped the whole server at start, and at `Init` reached the client
as "UNKNOWN CORBA system exception" after `delete_device` had torn the device down. An exception raised by
`delete_device` reaches the client as a DevFailed and leaves the device as it was, so the check is there.

To add a property: one row in PROPERTIES naming the classes that have it; both classes declare theirs from
this table (`configured_base`), and the device reads the value as `self.<name>`.
"""
from __future__ import annotations

import argparse
import enum
import math
from dataclasses import dataclass
import logging
from typing import Any, Callable, Sequence

import tango
from tango.server import Device, device_property

from ..driver.session import DEFAULT_PURGE_DELAY_S
from ..protocol.options import DEFAULT_STALE_SCAN_TIMEOUT_S
from .device_common import fail

log = logging.getLogger("nxpar.tango")

NEXUS_WRITER = "NexusWriter"
BLISS_WRITER = "BlissWriter"
BOTH = (NEXUS_WRITER, BLISS_WRITER)
TRUE_WORDS = ("true", "yes", "on", "1", "t", "y")  # what PyTango's strtobool takes
FALSE_WORDS = ("false", "no", "off", "0", "f", "n")


class Kind(enum.Enum):
    """The type of a property: its Tango type and how its database strings are read."""

    NUMBER = float
    FLAG = bool
    TEXT = str
    TEXTS = (str,)  # several lines (a DevVarStringArray property)


class BadValue(ValueError):
    """A property value outside what its row accepts; the message names the property and the range."""


@dataclass(frozen=True)
class PropertySpec:
    """One property: its type, default, accepted range and what it means."""

    name: str
    kind: Kind
    default: Any
    doc: str
    classes: tuple[str, ...] = BOTH
    unit: str = ""  # of a number: "seconds", "MB"
    low: float | None = None  # a number's accepted range, both ends included
    high: float | None = None
    check: Callable[[Any], bool] | None = None  # a further check of the value (e.g. a URL's scheme) …
    expects: str = ""  # … and what it accepts, in words

    def accepted(self) -> str:
        """What the property takes, in words: 'a number of seconds from 0.05 to 3600'."""
        if self.expects:
            return self.expects
        if self.kind is Kind.FLAG:
            return "true or false"
        if self.kind is not Kind.NUMBER:
            return "text"
        what = f"a number of {self.unit}" if self.unit else "a number"
        if self.low is not None and self.high is not None:
            return f"{what} from {self.low:g} to {self.high:g}"
        return f"{what} ≥ {self.low:g}" if self.low is not None else what

    def parse(self, raw: Sequence[str]) -> Any:
        """The value of the database's strings (none: the default); BadValue when it is not accepted."""
        lines = [str(line) for line in raw]
        if not lines:
            return self.default
        if self.kind is Kind.TEXTS:
            value: Any = [line.strip() for line in lines if line.strip()]
        elif len(lines) > 1:
            raise self._bad(lines, "one value, not several lines")
        else:
            value = self._scalar(lines[0])
        if self.check is not None and not self.check(value):
            raise self._bad(lines)
        return value

    def _scalar(self, text: str) -> Any:
        if self.kind is Kind.TEXT:
            return text.strip()
        if self.kind is Kind.FLAG:
            word = text.strip().lower()
            if word not in TRUE_WORDS + FALSE_WORDS:
                raise self._bad([text])
            return word in TRUE_WORDS
        try:
            value = float(text)
        except ValueError:
            raise self._bad([text]) from None
        if not math.isfinite(value) or (self.low is not None and value < self.low) or (
                self.high is not None and value > self.high):
            raise self._bad([text])
        return value

    def _bad(self, lines: list[str], expected: str = "") -> BadValue:
        shown = lines[0] if len(lines) == 1 else lines
        return BadValue(f"property {self.name} = {shown!r} is not accepted: {expected or self.accepted()} expected "
                        f"(default {self.default!r})")

    def declare(self) -> Any:
        """The Tango declaration (the class's property list, as Jive and `RegisterNexusWriter` see it)."""
        return device_property(dtype=self.kind.value, default_value=self.default, doc=self.doc)


def _is_redis_url(url: str) -> bool:
    return url == "" or url.startswith(("redis://", "rediss://", "unix://"))


PROPERTIES: tuple[PropertySpec, ...] = (
    PropertySpec("keepshape", Kind.FLAG, False, "grid scans keep their grid shape (npoints2, npoints1, …) "
                 "instead of flat (npoints, …)", classes=(NEXUS_WRITER,)),
    PropertySpec("multivalue_positioners", Kind.FLAG, False, "positioners with several values are written as one "
                 "group", classes=(NEXUS_WRITER,)),
    PropertySpec("enable_external_nonhdf5", Kind.FLAG, False, "Lima EDF frames as an HDF5 external dataset",
                 classes=(NEXUS_WRITER,)),
    PropertySpec("disable_external_hdf5", Kind.FLAG, False, "no virtual dataset over Lima's HDF5 files "
                 "(with copy_non_external: Lima / Lima2 frames copied, not linked)"),
    PropertySpec("copy_non_external", Kind.FLAG, False, "frames that are not linked are copied into the scan file"),
    PropertySpec("mosca_vds", Kind.FLAG, False, "Mosca spectra as a virtual dataset over Mosca's files "
                 "(default: copied)"),
    PropertySpec("noconfig", Kind.FLAG, False, "ignore scan_info['nexuswriter'] (device names and types from "
                 "BLISS's configuration)", classes=(NEXUS_WRITER,)),
    PropertySpec("required_disk_space", Kind.NUMBER, 200.0, "MB: below it a scan FAULTs", unit="MB", low=0.0),
    PropertySpec("recommended_disk_space", Kind.NUMBER, 1024.0, "MB: below it a scan gets a warning",
                 unit="MB", low=0.0),
    PropertySpec("purge_delay", Kind.NUMBER, DEFAULT_PURGE_DELAY_S, "seconds after which finished scans are forgotten by the "
                 "device", classes=(NEXUS_WRITER,), unit="seconds", low=0.0),
    PropertySpec("flush_period", Kind.NUMBER, 0.5, "seconds between collective flushes (what readers see "
                 "during a scan)", unit="seconds", low=0.05, high=3600.0),
    PropertySpec("step_mb_per_writer", Kind.NUMBER, 16.0, "MB each writer rank reads and writes per step "
                 "(memory per rank)", unit="MB", low=1 / 16, high=4096.0),
    PropertySpec("stale_scan_timeout", Kind.NUMBER, DEFAULT_STALE_SCAN_TIMEOUT_S, "seconds without any change "
                 "in a scan's state or streams after which it is finalised FAILED (its publisher is gone); "
                 "0: never", unit="seconds", low=0.0),
    PropertySpec("max_write_delay", Kind.NUMBER, 0.5, "seconds rows of a partly filled chunk may wait before "
                 "they are written", unit="seconds", low=0.0, high=3600.0),
    PropertySpec("allowed_roots", Kind.TEXTS, [], "directories every path from scan metadata must resolve into, "
                 "symlinks resolved (unset: anywhere but the system directories; docs/allowed_roots.md)",
                 expects="absolute directories, one per line (',' or ':' also separate; one that is not absolute is "
                         "left out, never widening what is allowed)"),
    PropertySpec("redis_url", Kind.TEXT, "", "blissdata Redis URL (empty: REDIS_DATA_URL, else asked from "
                 "Beacon)", classes=(BLISS_WRITER,), check=_is_redis_url,
                 expects="a redis://, rediss:// or unix:// URL, or nothing"),
)
BY_NAME = {p.name: p for p in PROPERTIES}


def of_class(tango_class: str) -> list[PropertySpec]:
    """The rows of one Tango class, in table order."""
    return [p for p in PROPERTIES if tango_class in p.classes]


class ConfiguredDevice(Device):
    """A writer device whose properties are read against the table; `property_warnings`: the values
    replaced by their default at the device's start."""

    property_warnings: tuple[str, ...] = ()

    def get_device_properties(self, ds_class=None) -> None:
        """Called by `init_device`: every declared property, read one by one; a bad one gets its default."""
        values, problems = read_properties(self)
        for name, value in values.items():
            setattr(self, name, value)
        self.property_warnings = tuple(f"{problem}: the default is used" for problem in problems)
        log.debug("%s: properties %s", self.get_name(), ", ".join(f"{k}={v!r}" for k, v in values.items()))
        for warning in self.property_warnings:
            log.warning("%s: %s", self.get_name(), warning)

    def refuse_bad_properties(self) -> None:
        """First thing `delete_device` does: at Tango Init a bad value refuses the Init, before anything is
        torn down (the device keeps its settings). Nothing at server shutdown."""
        if tango.Util.instance().is_svr_shutting_down():
            return
        try:
            _, problems = read_properties(self)
        except RuntimeError as e:  # a mandatory property not set
            problems = [str(e)]
        if problems:
            message = "Init refused, the device keeps its settings: " + "; ".join(problems)
            log.warning("%s: %s", self.get_name(), message)
            fail(f"{type(self).__name__}_BadProperty", message, "Init")


def configured_base(tango_class: str) -> type:
    """The base class of a writer device: a `ConfiguredDevice` declaring the table's properties of the class."""
    declared = {p.name: p.declare() for p in of_class(tango_class)}
    return type(ConfiguredDevice)(f"{tango_class}Properties", (ConfiguredDevice,), declared)


def read_properties(device: Device) -> tuple[dict[str, Any], list[str]]:
    """name → value of every property the device's class declares, from the Tango database, and what was
    wrong (a bad value: the default in its place). Properties outside the table (`session`) are text."""
    declared = device.get_device_class().device_property_list  # name → [dtype, doc, default, mandatory]
    raw = tango.Util.instance().get_database().get_device_property(device.get_name(), list(declared))
    values: dict[str, Any] = {}
    problems: list[str] = []
    for name, (_, _, default, mandatory) in declared.items():
        lines = [str(line) for line in raw[name]]
        spec = BY_NAME.get(name)
        if spec is None:
            if mandatory and not lines:
                raise RuntimeError(f"device property {name} is mandatory and not set")
            values[name] = lines[0] if lines else default
            continue
        try:
            values[name] = spec.parse(lines)
        except BadValue as e:
            values[name] = spec.default
            problems.append(str(e))
    return values, problems


def option_type(name: str) -> Callable[[str], Any]:
    """An argparse `type` checking a command-line option against the property of the same name."""
    spec = BY_NAME[name]

    def parse(text: str) -> Any:
        try:
            return spec.parse([text])
        except BadValue:
            raise argparse.ArgumentTypeError(f"{text!r}: {spec.accepted()} expected") from None

    parse.__name__ = spec.kind.name.lower()  # argparse names the type in its own messages
    return parse
