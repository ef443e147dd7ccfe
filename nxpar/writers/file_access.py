"""How scan files are opened: the HDF5 file access property list and the MPI-IO hints behind it.

Settings come from the environment, read at start-up. mpirun/srun give every rank the same
environment, and the first writer rank's reading is broadcast on the first collective open, so all
writer ranks open every file with identical settings even where a node's environment differs (a
rank whose own reading differs says so). The environment, and not device properties, because the
settings belong to the MPI job (nodes, file system), not to a BLISS session, and a device property
would reach the writer ranks only through a step.

    NXPAR_ALIGNMENT            bytes: H5Pset_alignment interval (e.g. the Lustre stripe size); 0/unset: off
    NXPAR_ALIGNMENT_THRESHOLD  bytes: only allocations at least this big are aligned (default: the interval)
    NXPAR_MPIO_HINTS           "key=value,..." → MPI.Info for set_fapl_mpio (romio_cb_write=enable, cb_nodes=2,
                               cb_buffer_size=4194304, striping_factor=4, striping_unit=4194304, ...)
    NXPAR_COLL_METADATA_OPS    1/0: collective metadata reads (H5Pset_all_coll_metadata_ops; default 1)
    NXPAR_COLL_METADATA_WRITE  1/0: collective metadata writes (H5Pset_coll_metadata_write; default 1)
    NXPAR_MDC_INITIAL_SIZE     bytes: initial metadata cache size (H5Pset_mdc_config; HDF5's default 2 MiB)
    NXPAR_META_BLOCK_SIZE      bytes: metadata aggregation block (H5Pset_meta_block_size; HDF5's default 2048)

An invalid value is logged as a warning and left out (HDF5's default applies): never a dead service.
"""
from __future__ import annotations

import ctypes
import functools
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

import h5py
from mpi4py import MPI

log = logging.getLogger("nxpar.file_access")

HINT_CHOICES = {"enable", "disable", "automatic"}
# Hints whose value ROMIO expects to be one of HINT_CHOICES, and hints that are positive integers.
CHOICE_HINTS = {"romio_cb_write", "romio_cb_read", "romio_ds_write", "romio_ds_read", "romio_no_indep_rw"}
INT_HINTS = {"cb_nodes", "cb_buffer_size", "striping_factor", "striping_unit", "ind_wr_buffer_size",
             "ind_rd_buffer_size", "romio_lustre_co_ratio", "cb_config_list_nodes"}


@dataclass(frozen=True)
class FileAccessSettings:
    """What every writer rank applies to the file access property list of a scan file."""

    alignment_threshold: int = 1  # HDF5's defaults (1, 1): no alignment
    alignment_interval: int = 1
    mpio_hints: tuple[tuple[str, str], ...] = ()
    coll_metadata_ops: bool = True
    coll_metadata_write: bool = True
    mdc_initial_size: int | None = None
    meta_block_size: int | None = None
    problems: tuple[str, ...] = field(default=(), compare=False)

    def describe(self) -> str:
        align = (f"alignment {self.alignment_interval} B for objects >= {self.alignment_threshold} B"
                 if self.alignment_interval > 1 else "alignment off")
        hints = ", ".join(f"{k}={v}" for k, v in self.mpio_hints) or "none"
        return (f"{align}; MPI-IO hints: {hints}; collective metadata ops={self.coll_metadata_ops} "
                f"write={self.coll_metadata_write}; metadata cache initial size="
                f"{self.mdc_initial_size or 'default'}; meta block size={self.meta_block_size or 'default'}")

    def mpi_info(self) -> MPI.Info:
        """A new MPI.Info with the hints (caller frees it), or MPI.INFO_NULL."""
        if not self.mpio_hints:
            return MPI.INFO_NULL
        info = MPI.Info.Create()
        for key, value in self.mpio_hints:
            info.Set(key, value)
        return info


def _positive_int(name: str, text: str, problems: list[str]) -> int | None:
    try:
        value = int(text.strip(), 0)
    except ValueError:
        value = 0
    if value > 0:
        return value
    problems.append(f"{name}={text!r} ignored: not a positive integer")
    return None


def _flag(name: str, text: str | None, default: bool, problems: list[str]) -> bool:
    if text is None or text.strip() == "":
        return default
    low = text.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    problems.append(f"{name}={text!r} ignored: not 1/0")
    return default


def parse_hints(text: str, problems: list[str]) -> tuple[tuple[str, str], ...]:
    """'k=v,k=v' (commas or whitespace): known ROMIO hints checked, unknown ones passed on as given."""
    hints: dict[str, str] = {}
    for item in text.replace(",", " ").split():
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            problems.append(f"NXPAR_MPIO_HINTS item {item!r} ignored: expected key=value")
            continue
        if key in CHOICE_HINTS and value not in HINT_CHOICES:
            problems.append(f"MPI-IO hint {key}={value!r} ignored: expected one of {sorted(HINT_CHOICES)}")
            continue
        if key in INT_HINTS and _positive_int(f"MPI-IO hint {key}", value, problems) is None:
            continue
        hints[key] = value
    return tuple(hints.items())


def settings_from_env(environ: Mapping[str, str] | None = None) -> FileAccessSettings:
    """The settings the environment asks for; invalid values are left out and listed in `problems`."""
    env = os.environ if environ is None else environ
    problems: list[str] = []
    interval, threshold = 1, 1
    if env.get("NXPAR_ALIGNMENT", "").strip() not in ("", "0"):
        interval = _positive_int("NXPAR_ALIGNMENT", env["NXPAR_ALIGNMENT"], problems) or 1
        threshold = interval
        if interval > 1 and env.get("NXPAR_ALIGNMENT_THRESHOLD", "").strip():
            threshold = _positive_int("NXPAR_ALIGNMENT_THRESHOLD", env["NXPAR_ALIGNMENT_THRESHOLD"],
                                      problems) or interval
    sizes = {}
    for name in ("NXPAR_MDC_INITIAL_SIZE", "NXPAR_META_BLOCK_SIZE"):
        sizes[name] = _positive_int(name, env[name], problems) if env.get(name, "").strip() else None
    return FileAccessSettings(
        alignment_threshold=threshold if interval > 1 else 1, alignment_interval=interval,
        mpio_hints=parse_hints(env.get("NXPAR_MPIO_HINTS", ""), problems),
        coll_metadata_ops=_flag("NXPAR_COLL_METADATA_OPS", env.get("NXPAR_COLL_METADATA_OPS"), True, problems),
        coll_metadata_write=_flag("NXPAR_COLL_METADATA_WRITE", env.get("NXPAR_COLL_METADATA_WRITE"), True,
                                  problems),
        mdc_initial_size=sizes["NXPAR_MDC_INITIAL_SIZE"], meta_block_size=sizes["NXPAR_META_BLOCK_SIZE"],
        problems=tuple(problems))


def log_settings(settings: FileAccessSettings, logger: logging.Logger = log) -> None:
    """At start-up: what the scan files will be opened with, and what was refused."""
    for problem in settings.problems:
        logger.warning("file access setting %s", problem)
    logger.info("file access: %s", settings.describe())


# -- the settings every writer rank uses (COLLECTIVE on first use) ---------------------------------
_AGREED: dict[int, FileAccessSettings] = {}


def agreed_settings(comm: MPI.Intracomm) -> FileAccessSettings:
    """COLLECTIVE on the first call per communicator: the first writer rank's settings, on all ranks."""
    key = comm.py2f()
    if key not in _AGREED:
        mine = settings_from_env()
        agreed = comm.bcast(mine if comm.rank == 0 else None, root=0)
        if comm.rank == 0:
            log_settings(agreed)
        elif mine != agreed:
            log.warning("this rank's environment asks for other file access settings (%s); using the "
                        "first writer rank's (%s)", mine.describe(), agreed.describe())
        _AGREED[key] = agreed
    return _AGREED[key]


# -- the file access property list ------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _hdf5_lib() -> Any:
    """The HDF5 library h5py is linked to (for the calls h5py does not wrap): found among the
    libraries this process has loaded, e.g. Debian's libhdf5_mpich.so.103."""
    with open("/proc/self/maps") as maps:
        for line in maps:
            path = line.split()[-1]
            name = os.path.basename(path)
            if name.startswith("libhdf5") and ".so" in name and "_hl" not in name and "cpp" not in name:
                return ctypes.CDLL(path)
    raise OSError("the HDF5 library is not loaded in this process")


def ctypes_hid(hid: int) -> Any:
    return ctypes.c_int64(hid)


def coll_metadata(fapl: h5py.h5p.PropFAID) -> tuple[bool, bool]:
    """(collective metadata reads, collective metadata writes) as set in `fapl` (read back)."""
    lib = _hdf5_lib()
    ops, write = ctypes.c_bool(), ctypes.c_bool()
    lib.H5Pget_all_coll_metadata_ops(ctypes_hid(fapl.id), ctypes.byref(ops))
    lib.H5Pget_coll_metadata_write(ctypes_hid(fapl.id), ctypes.byref(write))
    return ops.value, write.value


def make_fapl(comm: MPI.Intracomm, settings: FileAccessSettings) -> h5py.h5p.PropFAID:
    """The mpio file access property list with every setting applied (not collective)."""
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    info = settings.mpi_info()
    try:
        fapl.set_fapl_mpio(comm, info)  # HDF5 keeps its own copy of the Info
    finally:
        if info != MPI.INFO_NULL:
            info.Free()
    _apply_layout_settings(fapl, settings)
    try:
        lib = _hdf5_lib()
        lib.H5Pset_all_coll_metadata_ops(ctypes_hid(fapl.id), int(settings.coll_metadata_ops))
        lib.H5Pset_coll_metadata_write(ctypes_hid(fapl.id), int(settings.coll_metadata_write))
    except (OSError, AttributeError):
        log.warning("collective metadata operations not available", exc_info=True)
    return fapl


def make_serial_fapl(settings: FileAccessSettings) -> h5py.h5p.PropFAID:
    """The serial (sec2) file access property list: alignment and metadata settings, no file
    locking (readers may open the file while it is written, as with the MPI-IO driver)."""
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    fapl.set_file_locking(False, True)
    _apply_layout_settings(fapl, settings)
    return fapl


def _apply_layout_settings(fapl: h5py.h5p.PropFAID, settings: FileAccessSettings) -> None:
    if settings.alignment_interval > 1:
        fapl.set_alignment(settings.alignment_threshold, settings.alignment_interval)
    if settings.meta_block_size:
        fapl.set_meta_block_size(settings.meta_block_size)
    if settings.mdc_initial_size:
        config = fapl.get_mdc_config()
        config.max_size = max(config.max_size, settings.mdc_initial_size)
        config.min_size = min(config.min_size, settings.mdc_initial_size)
        config.set_initial_size = True
        config.initial_size = settings.mdc_initial_size
        fapl.set_mdc_config(config)


def open_scan_file(path: str, comm: MPI.Intracomm, serial: bool = False) -> h5py.File:
    """COLLECTIVE: open/create a scan file with the agreed settings: the mpio driver (collective
    metadata by default), or HDF5's serial driver when `serial` and one process writes it (`comm`
    of size 1: no MPI-IO layer to go through, and whole chunks may be stored pre-compressed,
    direct/chunk_writer.py)."""
    settings = agreed_settings(comm)
    fapl = make_serial_fapl(settings) if serial and comm.size == 1 else make_fapl(comm, settings)
    name = path.encode()
    # one rank looks, every rank does the same: a node's stale view must not split the ranks between
    # a collective create and a collective open
    exists = comm.bcast(os.path.exists(path) if comm.rank == 0 else None, root=0)
    if exists:
        return h5py.File(h5py.h5f.open(name, h5py.h5f.ACC_RDWR, fapl=fapl))
    return _create_whole(path, comm, fapl)


def _create_whole(path: str, comm: MPI.Intracomm, fapl: h5py.h5p.PropFAID) -> h5py.File:
    """COLLECTIVE: a new scan file appears at its path only once it is a valid HDF5 file (made under a
    hidden name, its superblock flushed, then linked to the path), so that a reader opening it at once
    never meets 'file signature not found'; it never replaces a file that appeared meanwhile."""
    directory, base = os.path.split(os.path.abspath(path))
    hidden = comm.bcast(os.path.join(directory, f".{base}.{os.getpid()}.creating") if comm.rank == 0 else None, root=0)
    f = h5py.File(h5py.h5f.create(hidden.encode(), h5py.h5f.ACC_EXCL, fapl=fapl))
    f.flush()
    error = ""
    if comm.rank == 0:
        try:
            os.link(hidden, path)  # fails if the path exists: nothing is ever replaced
        except OSError as e:
            error = f"cannot create {path}: {e}"
        finally:
            try:
                os.unlink(hidden)
            except OSError:
                pass
    error = comm.bcast(error, root=0)
    if error:
        f.close()
        raise OSError(error)
    return f
