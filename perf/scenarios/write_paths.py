"""write_paths: one process writing frames from memory by each of nxpar's write paths (perf/write_probe.py):
in-memory, serial driver, MPI-IO independent and collective, whole chunks compressed outside HDF5 on
1 and 2 threads; for filtered and unfiltered frames, BLISS's tiled chunks (8,256,256) and one-frame
chunks, and with glibc keeping freed memory (MALLOC_TRIM_THRESHOLD_ / MALLOC_MMAP_THRESHOLD_).

    python -m perf write_paths --frames 320
"""
from __future__ import annotations

import tempfile

from ..core.results import ROOT, Document
from ..core.slices import SliceSet

SLICES = False
MALLOC = {"MALLOC_MMAP_THRESHOLD_": "268435456", "MALLOC_TRIM_THRESHOLD_": "536870912"}


def add_arguments(p) -> None:
    p.add_argument("--frames", type=int, default=320)
    p.add_argument("--compression", nargs="+", default=["lz4-bitshuffle", "gzip-byteshuffle", "none"])
    p.add_argument("--repeat", type=int, default=1)


def cases(schemes: list[str]) -> list[tuple[str, int, str, dict[str, str]]]:
    """(scheme, chunk rows, environment label, environment)."""
    out = [(s, 8, "default", {}) for s in schemes]
    out += [(s, 8, "glibc keeps freed memory", MALLOC) for s in schemes if s != "none"]
    out += [("none", 1, "default", {})] if "none" in schemes else []
    return out


def run(args, doc: Document, _slices: SliceSet | None) -> None:
    from ..probes import run_module

    parent = ROOT / "run" if (ROOT / "run").exists() else None
    with tempfile.TemporaryDirectory(prefix="nxpar-paths-", dir=parent) as workdir:
        for _ in range(args.repeat):
            for scheme, chunk_rows, label, env in cases(args.compression):
                rates = run_module(1, "perf.write_probe", [workdir, str(args.frames), scheme, str(chunk_rows)], env)
                for path, mb_s in rates.items():
                    doc.add("path", scheme=scheme, chunks=f"({chunk_rows},256,256)" if chunk_rows > 1 else "(1,1024,1024)",
                            environment=label, path=path, mb_per_s=mb_s)
                print(f"  {scheme} {chunk_rows} {label}: " + ", ".join(f"{k} {v:.0f}" for k, v in rates.items()),
                      flush=True)
