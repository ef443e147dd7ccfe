"""Logging options shared by the console scripts (docs/interface.md §1.1) and how their logs are written,
and `one_line` for the errors they report."""
from __future__ import annotations

import argparse
import logging
import logging.handlers
import os
import sys

LEVELS = ["CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG", "NOTSET"]
# INFO, not blisswriter's WARNING: a log that says nothing of the scans it writes cannot be used to run the
# service. INFO is kept to a few lines per scan (start, end, a progress line every 30 s of a long scan) and
# a few at start-up; the detail is at DEBUG.
DEFAULT_LEVEL = "INFO"
SHORT = {"WARNING": "WARN ", "INFO": "INFO ", "CRITICAL": "FATAL", "ERROR": "ERROR", "DEBUG": "DEBUG"}


class _Formatter(logging.Formatter):
    def __init__(self, rank: int | None) -> None:
        prefix = f"[rank {rank}] " if rank is not None else ""
        super().__init__(prefix + "%(levelshort)s %(asctime)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        record.levelshort = SHORT.get(record.levelname, record.levelname[:5])
        return super().format(record)


class MpiArgumentParser(argparse.ArgumentParser):
    """An ArgumentParser for a command run under mpirun: its help, usage and errors are printed once, by
    the first rank (every rank parses the same command line and exits alike, before MPI starts)."""

    def _print_message(self, message: str, file=None) -> None:
        if os.environ.get("PMI_RANK", os.environ.get("OMPI_COMM_WORLD_RANK", "0")) == "0":
            super()._print_message(message, file)


def add_cli_args(parser: argparse.ArgumentParser) -> None:
    """--log and the log file options; blisswriter's spellings (--logfile, --filesize, --filebackups,
    --nologstdout; docs/interface.md §1.1) stay as aliases."""
    g = parser.add_argument_group("logging")
    g.add_argument("--log", dest="level", default=DEFAULT_LEVEL, type=str.upper, choices=LEVELS, metavar="LEVEL",
                   help=f"log level of nxpar: {', '.join(LEVELS)} (default {DEFAULT_LEVEL}: start-up, one line per "
                        "scan start and end, progress of long scans, warnings; DEBUG: also each scan's streams and "
                        "phases). Records below WARNING go to stdout, the others to stderr")
    g.add_argument("--log-file", "--logfile", dest="logfile", default="", metavar="PATH",
                   help="also log to this file, rotated (default: no file)")
    g.add_argument("--log-file-size", "--filesize", dest="maxMBytes", type=float, default=5, metavar="MB",
                   help="MB per log file (default 5)")
    g.add_argument("--log-file-backups", "--filebackups", dest="backupCount", type=int, default=9, metavar="N",
                   help="rotated log files kept (default 9)")
    g.add_argument("--no-log-stdout", "--nologstdout", dest="logstdout", action="store_false",
                   help="nothing to stdout (warnings and errors still go to stderr)")


def configure(args: argparse.Namespace, rank: int | None = None) -> None:
    """Level and handlers of the `nxpar` logger: < WARNING to stdout, ≥ WARNING to stderr."""
    logger = logging.getLogger("nxpar")
    logger.setLevel(getattr(logging, args.level))
    logger.propagate = False
    fmt = _Formatter(rank)
    err = logging.StreamHandler(sys.stderr)
    err.setLevel(logging.WARNING)
    err.setFormatter(fmt)
    logger.addHandler(err)
    if getattr(args, "logstdout", True):
        out = logging.StreamHandler(sys.stdout)
        out.addFilter(lambda r: r.levelno < logging.WARNING)
        out.setFormatter(fmt)
        logger.addHandler(out)
    if getattr(args, "logfile", ""):
        os.makedirs(os.path.dirname(os.path.abspath(args.logfile)), exist_ok=True)
        size = int(args.maxMBytes * 1024**2)
        fh = logging.handlers.RotatingFileHandler(args.logfile, maxBytes=size, backupCount=args.backupCount)
        fh.setFormatter(fmt)
        logger.addHandler(fh)


def one_line(error: BaseException) -> str:
    """An error as one line: its type and the first line of its message (a DevFailed: its first description)."""
    args = getattr(error, "args", ())
    desc = getattr(args[0], "desc", None) if args else None
    text = str(desc if desc is not None else error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__
