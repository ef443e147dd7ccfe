"""`mpirun -n N NexusWriterService INSTANCE`: the MPI job. Rank 0 serves the Tango devices (`NexusWriter`,
`BlissWriter`) of the Tango server nexuswriter/INSTANCE; ranks 1..N-1 are writers (nxpar.writers.rank_loop)
and never talk Tango. The Tango database is TANGO_HOST's; Redis is REDIS_DATA_URL, else Beacon's (BEACON_HOST).
Exit status 1 when the Tango server cannot start (no Tango database, no device registered for the server):
one line says why, and the writer ranks leave cleanly.

Stopping: SIGTERM or SIGINT (Ctrl-C of mpirun) on any rank, at any moment (stop_signals.py); rank 0 then
finalises the scans being written (FAILED, with end_time; the next run writes them again from Redis) and
dismisses the writer ranks. Supervision (restart when the job dies, the restart reason in the devices'
Status): supervision.py, run_marker.py. Modules that start MPI or Tango are imported inside the
functions: the stop signals are blocked before either starts a thread.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time

from ..driver.durability import DURABILITY
from . import logging_setup, stop_signals

log = logging.getLogger("nxpar.tango")


def parse_args(argv: list[str]) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def build_parser() -> argparse.ArgumentParser:
    p = logging_setup.MpiArgumentParser(prog="NexusWriterService", description=__doc__,
                                        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("instance", help="Tango server instance (e.g. nexuswriters): its devices are those registered "
                                    "for the server <server>/<instance> (RegisterNexusWriter --instance)")
    p.add_argument("--server", default="nexuswriter", help="Tango server name (default nexuswriter)")
    p.add_argument("--log-tango", "--log_tango", dest="log_tango", default="WARNING", type=str.upper,
                   choices=logging_setup.LEVELS, metavar="LEVEL",
                   help="verbosity of the Tango library itself (default WARNING)")
    p.add_argument("--patch", action="append", default=[], help="accepted and ignored (blisswriter's test option)")
    logging_setup.add_cli_args(p)
    return p


# Rank 0 is threads that mostly wait (scan drivers, the writer channel, Tango): a thread woken by an
# answer or a step waits for the GIL up to the switch interval (5 ms by default) while another runs
# Python; the steps at a scan's end pass through three threads each (docs/reference_comparison.md,
# "Where the time goes").
RANK0_SWITCH_INTERVAL_S = 0.0005

TANGO_VERBOSITY = {"DEBUG": "-v5", "INFO": "-v4", "WARNING": "-v3", "ERROR": "-v2", "CRITICAL": "-v1"}


def main(argv: list[str] | None = None) -> None:
    stop_signals.block()  # EVERY RANK, before MPI and Tango start threads
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from mpi4py import MPI

    from ..protocol.mpi_roles import writer_comm

    world = MPI.COMM_WORLD
    logging_setup.configure(args, rank=world.rank)
    if world.rank == 0:  # what the writer ranks will open the scan files with (nxpar/writers/file_access.py)
        from ..writers.file_access import log_settings, settings_from_env

        log_settings(settings_from_env())
    writers = writer_comm()  # COLLECTIVE: every rank, once
    if world.rank != 0:
        from ..writers.rank_loop import run_writer_rank

        run_writer_rank(world, writers)
        return
    sys.setswitchinterval(RANK0_SWITCH_INTERVAL_S)
    sys.exit(run_front_end(world, writers, args))


def local_executor(world, writers):
    """N == 1: rank 0 is also the only writer, and runs the steps itself (None when N > 1)."""
    if world.size != 1:
        return None
    from ..writers.executor import StepExecutor

    return StepExecutor(writers)


def tango_problem(server: str, instance: str) -> str:
    """Why the Tango server cannot start, in one line; "" when it can (the Tango library would print
    its reason and exit the process, leaving the writer ranks to be killed by mpirun)."""
    import tango

    where = os.environ.get("TANGO_HOST", "")
    try:
        listing = tango.Database().get_device_class_list(f"{server}/{instance}")
    except tango.DevFailed as e:
        return f"cannot use the Tango database{' at ' + where if where else ''}: {logging_setup.one_line(e)}"
    if not [name for name in list(listing)[::2] if not name.lower().startswith("dserver/")]:
        return (f"no device is registered for the Tango server {server}/{instance} in the Tango database {where}: "
                f"register one with `RegisterNexusWriter SESSION --instance {instance}`")
    return ""


def run_front_end(world, writers, args: argparse.Namespace) -> int:
    """RANK 0: the Tango server; on exit the writer ranks are told to close and leave. The run marker
    says how the previous run ended (before the devices start) and how this one ends. The exit status."""
    from ..driver.writer_channel import WriterChannel, abort_job
    from . import device_common
    from .run_marker import RunMarker

    signals = stop_signals.StopSignals(_stop_scans)
    marker = RunMarker(args.instance)

    def stop_job(reason: str) -> None:  # the watchdog or a broken channel: the next run will name the reason
        marker.record_stop_reason(reason)
        abort_job(world, reason)

    channel = device_common.CHANNEL = WriterChannel(world, local_executor(world, writers), abort=stop_job)
    problem = tango_problem(args.server, args.instance)
    if problem:
        log.error("%s", problem)
        channel.shutdown()
        return 1
    marker.start()  # a run that could not even start leaves the previous run's marker alone
    log.info("rank 0 of %d: Tango server %s/%s, Tango database %s, Redis %s", world.size, args.server,
             args.instance, os.environ.get("TANGO_HOST", ""),
             os.environ.get("REDIS_DATA_URL") or f"from Beacon {os.environ.get('BEACON_HOST', '(BEACON_HOST not set)')}")
    try:
        if not signals.received:
            _serve(args, signals)
    finally:
        signals.server_returned()
        _stop_scans()
        channel.shutdown()
        DURABILITY.drain(timeout=20)  # the closed files fsynced and their scans out of the journal
        time.sleep(0.1)
    marker.stopped_cleanly()
    return 0


def _serve(args: argparse.Namespace, signals: stop_signals.StopSignals) -> None:
    import tango
    from tango.server import run

    from .bliss_writer import BlissWriter  # BLISS's "mapping" route, same process
    from .nexus_writer import NexusWriter

    tango_args = [args.server, args.instance]
    if args.log_tango in TANGO_VERBOSITY:
        tango_args.append(TANGO_VERBOSITY[args.log_tango])
    run((NexusWriter, BlissWriter), args=tango_args, green_mode=tango.GreenMode.Synchronous,
        post_init_callback=signals.server_started)


def _stop_scans() -> None:
    """The scans being written are finalised (FAILED, with end_time, "the writer service stopped"), left
    to the next run, which writes them again from Redis; their threads end."""
    from . import device_common
    from .bliss_writer import stop_all_routes

    stop_all_routes()
    for sub in device_common.SUBSCRIBERS.values():
        for w in list(sub.writers.values()):
            if w.is_alive():
                w.stop(timeout=10, resumable=True)  # the next run writes them again from Redis


if __name__ == "__main__":
    main()
