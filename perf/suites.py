"""The benchmark commands behind the documents, as data, and `python -m perf suite NAME`, which runs
them one after the other, each writing perf/results/<entry>.json, then regenerates the documents'
tables (`python -m perf report`) and plots (`python -m perf plot`).

    python -m perf suite bench                 # `make bench`: every table of perf/RESULTS.md (~30 min)
    python -m perf suite scaling [--quick]     # `make bench-scaling`: perf/SCALING.md (< 20 min; --quick: minutes)
    python -m perf suite trials                # settings tried and not kept (perf/RESULTS.md, last section)
    python -m perf suite device                # a lent many-core machine, real cores (< 8 min; perf/device.sh)
    python -m perf suite bench --only frames-lz4 --dry-run

An entry's name is its JSON's name and the name of its block in the documents
(`<!-- perf:NAME -->`, perf/report/documents.py).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .core.results import RESULTS, ROOT, SCRATCH


@dataclass(frozen=True)
class Entry:
    name: str
    args: tuple[str, ...]
    quick: tuple[str, ...] | None = None  # the --quick variant's arguments (None: the entry is skipped)

    def argv(self, quick: bool, results: Path = RESULTS) -> list[str] | None:
        args = self.quick if quick else self.args
        path = results / f"{self.name}.json"
        return None if args is None else [*args, "--json", str(path.relative_to(ROOT) if path.is_relative_to(ROOT)
                                                                 else path)]


def _e(name: str, args: str, quick: str | None = None) -> Entry:
    return Entry(name, tuple(args.split()), tuple(quick.split()) if quick is not None else None)


LIVE_SLICES = "publisher=0.5,redis=0.5,rank0=0.3,writer=0.6"  # issue 23: live 1024² LZ4, 2 ranks
GZIP_SLICES = "publisher=0.4,redis=0.3,rank0=0.2,writer=0.2"  # issue 23: gzip-byteshuffle, 1 and 4 writers

SUITES: dict[str, list[Entry]] = {
    "bench": [
        _e("frames-lz4", "frames --frames 500 --shape 1024 1024 --dtype uint16 --ranks 1 2 3 4 --repeat 3"),
        _e("frames-lz4-long", "frames --frames 2000 --shape 1024 1024 --dtype uint16 --ranks 1 3 --repeat 1"),
        _e("frames-lz4-2048", "frames --frames 100 --shape 2048 2048 --dtype uint32 --ranks 1 2 3 4 --repeat 2"),
        _e("frames-gzip", "frames --frames 300 --ranks 1 3 --repeat 2 --compression gzip-byteshuffle"),
        _e("frames-drain", "frames --frames 300 --ranks 1 3 --repeat 2 --modes drain --compression none gzip blosc-zstd"),
        _e("rss-3000", "replay --ranks 3 --frames 3000 --shape 256 256 --batch 10"),
        _e("rss-20000", "replay --ranks 3 --frames 20000 --shape 256 256 --batch 10"),
        _e("points", "points --repeat 3"),
        _e("mosca", "mosca --points 2000"),
        _e("ab-live", "ab --repeat 5 --variant NXPAR_SERIAL_DRIVER=0"),
        _e("ab-drain-1", "ab --ranks 1 --repeat 3 --preload --variant NXPAR_SERIAL_DRIVER=0"),
        _e("ab-drain-2", "ab --ranks 2 --repeat 3 --preload --variant NXPAR_SERIAL_DRIVER=0"),
        _e("ab-gzip-drain", "ab --ranks 2 --frames 300 --repeat 2 --preload --compression gzip-byteshuffle "
                            "--variant NXPAR_SERIAL_DRIVER=0"),
        _e("timeline", "timeline --repeat 3"),
    ],
    "scaling": [
        _e("emulation", "emulation", "emulation --seconds 1"),
        _e("scaling", "scaling", "scaling --quick"),
        _e("live-slices", f"ab --ranks 2 --frames 300 --repeat 3 --variant NXPAR_FSYNC=flush --slices {LIVE_SLICES}",
           f"ab --ranks 2 --frames 150 --repeat 1 --variant NXPAR_FSYNC=flush --slices {LIVE_SLICES}"),
        _e("gzip-slices", f"frames --frames 400 --shape 512 512 --ranks 2 5 --repeat 2 --modes live drain "
                          f"--compression gzip-byteshuffle --slices {GZIP_SLICES}"),
        _e("write-path-slices", f"ab --ranks 5 --frames 240 --shape 512 512 --repeat 2 --compression gzip-byteshuffle "
                                f"--variant NXPAR_WRITE_MODE=mpio --slices {GZIP_SLICES}",
           f"ab --ranks 5 --frames 120 --shape 512 512 --repeat 1 --compression gzip-byteshuffle "
           f"--variant NXPAR_WRITE_MODE=mpio --slices {GZIP_SLICES}"),
        _e("write-path-lz4-slices", f"ab --ranks 5 --frames 200 --repeat 2 --variant NXPAR_WRITE_MODE=mpio "
                                    f"--slices {GZIP_SLICES}",
           f"ab --ranks 5 --frames 100 --repeat 1 --variant NXPAR_WRITE_MODE=mpio --slices {GZIP_SLICES}"),
        _e("stages", "stages --frames 300", "stages --frames 60"),
        _e("file-copy", f"file_copy --writers 1 2 4 --frames 256 96 --repeat 2 --slices {GZIP_SLICES}",
           f"file_copy --writers 1 4 --frames 192 64 --repeat 1 --slices {GZIP_SLICES}"),
        _e("redis-threads", "redis_threads --readers 8 --slices redis=0.2,baseline=0.1",  # Redis 1 slice per io-thread
           "redis_threads --quick --readers 8 --slices redis=0.2,baseline=0.1"),
    ],
    "trials": [
        _e("trials-writer-settings", "ab --repeat 5 --variant nice=-5 --variant nice=5 --variant @step_mb_per_writer=48 "
                                     "--variant @flush_period=2 --variant NXPAR_COMPRESS_THREADS=1"),
        _e("trials-malloc", "ab --repeat 4 --variant MALLOC_MMAP_THRESHOLD_=268435456,MALLOC_TRIM_THRESHOLD_=536870912"),
        _e("write-paths", "write_paths"),
    ],
    "device": [
        _e("device-scaling", "scaling --real --seconds 2 --max-mb 512 --compression lz4-bitshuffle gzip-byteshuffle "
                             "blosc-zstd"),
        _e("device-live", "ab --ranks 5 --frames 300 --repeat 2 --variant NXPAR_WRITE_MODE=mpio"),
        _e("device-points", "points --scenario mixed --ranks 1 3 9 --repeat 1"),
    ],
}


def run_suite(name: str, quick: bool, only: list[str], dry_run: bool, results: Path = RESULTS) -> int:
    failed = []
    log = SCRATCH / f"suite-{name}.log"
    SCRATCH.mkdir(parents=True, exist_ok=True)
    for entry in SUITES[name]:
        argv = entry.argv(quick, results)
        if argv is None or (only and entry.name not in only):
            continue
        line = "python -m perf " + " ".join(argv)
        print(f"+ {line}", flush=True)
        if dry_run:
            continue
        t0 = time.monotonic()
        with open(log, "a") as fh:
            fh.write(f"\n+ {line}\n")
            fh.flush()
            rc = subprocess.run([sys.executable, "-m", "perf", *argv], cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT).returncode
        print(f"  {'ok' if rc == 0 else f'FAILED ({rc}), see {log}'} in {time.monotonic() - t0:.0f} s", flush=True)
        if rc:
            failed.append(entry.name)
    return len(failed)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m perf suite", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("suite", choices=list(SUITES))
    p.add_argument("--quick", action="store_true", help="the entries' quick variants (others skipped)")
    p.add_argument("--only", nargs="+", default=[], metavar="ENTRY")
    p.add_argument("--dry-run", action="store_true", help="print the commands only")
    p.add_argument("--no-report", action="store_true", help="leave the documents and plots as they are")
    p.add_argument("--results", type=Path, default=RESULTS,
                   help="write the JSON elsewhere (a trial run: the documents are then left as they are)")
    args = p.parse_args(argv)
    args.results = args.results.resolve()
    failures = run_suite(args.suite, args.quick, args.only, args.dry_run, args.results)
    if not args.dry_run and not args.no_report and args.results == RESULTS:
        from .report import documents, plots

        documents.main([])
        try:
            plots.main([])
        except SystemExit as e:  # no matplotlib anywhere: the tables are done all the same
            print(f"plots: {e}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
