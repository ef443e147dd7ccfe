"""Logging options shared by the console scripts (blisswriter's names, docs/interface.md §1.1)."""
from __future__ import annotations

import argparse
import logging
import logging.handlers
import os
import sys

LEVELS = ["CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG", "NOTSET"]
SHORT = {"WARNING": "WARN ", "INFO": "INFO ", "CRITICAL": "FATAL", "ERROR": "ERROR", "DEBUG": "DEBUG"}


class _Formatter(logging.Formatter):
    def __init__(self, rank: int | None) -> None:
        prefix = f"[rank {rank}] " if rank is not None else ""
        super().__init__(prefix + "%(levelshort)s %(asctime)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        record.levelshort = SHORT.get(record.levelname, record.levelname[:5])
        return super().format(record)


def add_cli_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log", dest="level", default="WARNING", type=str.upper, choices=LEVELS,
                        help="log level of nxpar (default WARNING): below WARNING to stdout, the rest to stderr")
    parser.add_argument("--logfile", default="", help="also log to this file (rotated)")
    parser.add_argument("--filesize", dest="maxMBytes", type=float, default=5, help="MB per log file (default 5)")
    parser.add_argument("--filebackups", dest="backupCount", type=int, default=9,
                        help="rotated log files kept (default 9)")
    parser.add_argument("--nologstdout", dest="logstdout", action="store_false", help="nothing to stdout")


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
