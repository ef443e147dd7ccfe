"""`mpirun -n N NexusWriterBatch REDIS_URL`: nxpar without Tango.

Writes every scan published in a blissdata Redis (or only a session's, --session) with the same
writer ranks, the same logs and the same files as the Tango service: a scan with an h5map
(`scan_info["h5maps"]`, BLISS's "mapping" route) as that tree, any other scan saved for the "nexus"
writer as the tree of docs/interface.md §4. For facilities without Tango, for debugging, and for re-writing
scans that are still in Redis (--existing; an entry already in its file is never overwritten, so
move the old files away first). Like `blisswriter run REDIS_URL` of blisswriter 3.0.0.

Rank 0 discovers the scans and plans the files; ranks 1..N-1 write. Ctrl-C (SIGINT) or SIGTERM:
no new scans, the running ones are written to their end; a second signal finalises them at once. Both
are blocked on every rank from the start (nxpar/service/stop_signals.py), and taken on rank 0's main
thread only once it listens: one that comes while the job starts is kept until then.
Exit status: 0 when every scan was written (OFF), 1 when one was FAULT, 2 when the run could not start
(a bad option, Redis unusable: one line says why).
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING

from ..driver.states import State
from ..protocol.options import SaveOptions, Tuning
from ..util.paths import policy_for, split_roots
from . import logging_setup, stop_signals

if TYPE_CHECKING:  # imported where used: the module loads fast, so main() blocks the stop signals early
    from blissdata.redis_engine.store import DataStore

log = logging.getLogger("nxpar.service.batch")

MAX_CONNECTION_ERRORS = 20


def parse_args(argv: list[str]) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def build_parser() -> argparse.ArgumentParser:
    p = logging_setup.MpiArgumentParser(prog="NexusWriterBatch", description=__doc__,
                                        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("redis_url", help="blissdata Redis URL, e.g. redis://localhost:6379")
    p.add_argument("--session", default="", help="only the scans of this BLISS session (default: all sessions)")
    p.add_argument("--existing", action="store_true",
                   help="also the scans already in Redis (batch re-writing), not only the new ones")
    p.add_argument("--once", action="store_true",
                   help="exit once no scan is left to discover and every scan is written (with --existing)")
    _add_save_options(p)
    g = p.add_argument_group("how rows are written (the device properties of the same names)")
    for name in ("flush_period", "step_mb_per_writer", "max_write_delay", "stale_scan_timeout"):
        _add_property_option(g, name)
    logging_setup.add_cli_args(p)
    return p


def _add_save_options(p: argparse.ArgumentParser) -> None:
    """What is written: the options of the Tango devices, under the names of NexusWriter's properties."""
    g = p.add_argument_group("what is written (the device properties of the same names)")
    g.add_argument("--keepshape", action="store_true", help="grid scans as nD datasets (keepshape; default: flat)")
    g.add_argument("--multivalue-positioners", action="store_true",
                   help="positioners with several values written as one group (multivalue_positioners)")
    g.add_argument("--enable-external-nonhdf5", action="store_true",
                   help="Lima EDF frames as an HDF5 external dataset over the EDF files (enable_external_nonhdf5)")
    g.add_argument("--disable-external-hdf5", action="store_true",
                   help="no virtual dataset over Lima's HDF5 files (disable_external_hdf5): alone, Lima frames are "
                        "'<file>::<index>' references and Lima2 frames stay linked; with --copy-non-external both "
                        "are copied")
    g.add_argument("--copy-non-external", action="store_true",
                   help="frames not linked are copied into the scan file by the writer ranks, chunked and compressed "
                        "(copy_non_external): Lima EDF frames without --enable-external-nonhdf5; with "
                        "--disable-external-hdf5 also Lima HDF5 frames and Lima2 frames (read from Lima2's master "
                        "file once it holds them; in the nexus tree and at an h5map's stream datasets alike). "
                        "Lima streams of an h5map stay linked, as blisswriter 3.0.0 writes them")
    g.add_argument("--mosca-vds", action="store_true",
                   help="Mosca spectra as a virtual dataset over Mosca's files (mosca_vds; default: copied)")
    g.add_argument("--noconfig", action="store_true",
                   help="ignore scan_info['nexuswriter']: device names and types not from BLISS's config (noconfig)")
    _add_property_option(g, "required_disk_space")
    _add_property_option(g, "recommended_disk_space")
    g.add_argument("--allowed-roots", type=_roots, action="extend", default=[], metavar="DIR[:DIR...]",
                   help="directories scan files, master files and detector files must be in, symlinks resolved "
                        "(allowed_roots; repeat or separate by ':' or ','; default: anywhere but the system "
                        "directories, with a warning)")


def _roots(text: str) -> list[str]:
    roots, bad = split_roots(text)
    if bad:
        raise argparse.ArgumentTypeError(f"not an absolute directory: {', '.join(bad)}")
    return roots


def _add_property_option(group, name: str) -> None:
    """--<name with dashes>: the device property's meaning, default and accepted range (service/properties.py)."""
    from .properties import BY_NAME, option_type  # here: the module loads fast (see the imports above)

    spec = BY_NAME[name]
    group.add_argument(f"--{name.replace('_', '-')}", type=option_type(name), default=spec.default,
                       metavar=spec.unit.upper() or "N",
                       help=f"{spec.doc} ({name}; {spec.accepted()}; default {spec.default:g})")


def save_options(args: argparse.Namespace) -> SaveOptions:
    """The SaveOptions of the command line, as NexusWriter makes them from its properties."""
    return SaveOptions(flat=not args.keepshape, multivalue_positioners=args.multivalue_positioners,
                       allow_external_nonhdf5=args.enable_external_nonhdf5,
                       allow_external_hdf5=not args.disable_external_hdf5, copy_non_external=args.copy_non_external,
                       mosca_vds=args.mosca_vds, configurable=not args.noconfig,
                       required_disk_space=args.required_disk_space,
                       recommended_disk_space=args.recommended_disk_space,
                       paths=policy_for("NexusWriterBatch", args.allowed_roots))


def main(argv: list[str] | None = None) -> None:
    stop_signals.block()  # EVERY RANK, before MPI starts threads
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from mpi4py import MPI

    from ..protocol.mpi_roles import writer_comm

    world = MPI.COMM_WORLD
    logging_setup.configure(args, rank=world.rank)
    if world.rank == 0:
        from ..writers.file_access import log_settings, settings_from_env

        log_settings(settings_from_env())
    writers = writer_comm()  # COLLECTIVE: every rank, once
    if world.rank != 0:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # writer ranks leave when rank 0 says so
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        from ..writers.rank_loop import run_writer_rank

        run_writer_rank(world, writers)
        return
    sys.exit(run_rank0(world, writers, args))


class _Signals:
    """First SIGINT/SIGTERM: stop discovering; second: finalise the running scans now."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.hurry = threading.Event()
        signal.signal(signal.SIGINT, self._handle)
        signal.signal(signal.SIGTERM, self._handle)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, stop_signals.STOP_SIGNALS)  # this (main) thread only

    def _handle(self, signum, frame) -> None:
        (self.hurry if self.stop.is_set() else self.stop).set()
        log.warning("%s received: %s", signal.Signals(signum).name,
                    "finalising the running scans now" if self.hurry.is_set() else
                    "no new scans, the running ones are written to their end (again to finalise them now)")


def run_rank0(world, writers, args: argparse.Namespace) -> int:
    """RANK 0: discovery + one ScanDriver per scan; the writer ranks are told to leave at the end."""
    from blissdata.redis_engine.store import DataStore

    from ..driver.requested_scans import ANY_ROUTE, RequestedScans
    from ..driver.writer_channel import WriterChannel
    from .main import local_executor

    channel = WriterChannel(world, local_executor(world, writers))
    tuning = Tuning.from_properties(args.flush_period, args.step_mb_per_writer, args.max_write_delay,
                                    args.stale_scan_timeout)
    options = save_options(args)
    route = RequestedScans("batch", channel, lambda: args.redis_url, options, tuning, ANY_ROUTE, instance="batch")
    signals = _Signals()
    try:
        try:
            route.connect()
            store = DataStore(args.redis_url)
            since = "0-0" if args.existing else store.get_last_scan_timetag()  # before saying we are ready
        except Exception as e:  # unreachable, not blissdata's, a bad URL: one line (the traceback at DEBUG)
            log.debug("Redis %s", args.redis_url, exc_info=True)
            log.error("cannot use Redis %s: %s", args.redis_url, logging_setup.one_line(e))
            return 2
        log.info("rank 0 of %d: writing %s scans of %s (%s), %s", world.size,
                 f"session {args.session!r}" if args.session else "all sessions'", args.redis_url,
                 "existing and new" if args.existing else "new", tuning.describe())
        _discover(route, store, since, args, signals.stop)
        _wait_written(route, signals.hurry)
    finally:
        route.stop_all()
        channel.shutdown()
        from ..driver.durability import DURABILITY

        DURABILITY.drain(timeout=20)  # the closed files fsynced and their scans out of the journal
    return _summary(route)


def _discover(route, store: DataStore, since: str, args: argparse.Namespace, stop: threading.Event) -> None:
    """Hand every scan (of the session) created after `since` to the route, in creation order, until
    stopped (or, with --once, until none is left)."""
    import redis
    from blissdata.exceptions import NoScanAvailable, ScanLoadError, ScanNotFoundError

    errors = 0
    while not stop.is_set():
        try:
            since, key = store.get_next_scan(since=since, timeout=1)
            errors = 0
        except NoScanAvailable:
            if args.once:
                return
            continue
        except (redis.ConnectionError, redis.TimeoutError) as e:
            errors += 1
            if errors >= MAX_CONNECTION_ERRORS:
                raise RuntimeError(f"Redis unreachable ({errors} attempts): {e}") from e
            log.warning("Redis connection error (%d/%d): %s", errors, MAX_CONNECTION_ERRORS, e)
            time.sleep(1)
            continue
        if args.session:
            try:
                if store.load_scan(key).session != args.session:
                    continue
            except (ScanNotFoundError, ScanLoadError) as e:
                log.warning("cannot load scan %s: %s", key, e)
                continue
        try:
            route.request(key)
        except KeyError as e:  # deleted from Redis meanwhile
            log.warning("%s", e)


def _wait_written(route, hurry: threading.Event) -> None:
    while route.running:
        if hurry.is_set():
            route.stop_all()
            return
        time.sleep(0.1)


def _summary(route) -> int:
    """One line per scan (as the Tango route's scan_states_info), then the exit status."""
    failed = 0
    for record in route.records():
        w = record.writer
        state = State(w.state)
        failed += state == State.FAULT
        (log.warning if state == State.FAULT else log.info)(
            "scan %s (%s): %s %s%s", getattr(w, "name", ""), record.key, state.value, w.reason,
            "".join(f" WARNING: {m}" for m in route.warnings(record.key)))
    log.info("%d scan(s) OFF (written, or not to be saved), %d FAULT", len(route.records()) - failed, failed)
    return 1 if failed else 0


if __name__ == "__main__":
    main()
