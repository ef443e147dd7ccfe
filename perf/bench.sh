#!/usr/bin/env bash
# `make bench`: every configuration of perf/RESULTS.md; tables to perf/out/bench.md, raw runs to perf/out/bench.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
mkdir -p perf/out
: > perf/out/bench.md
run() { echo "+ perf.bench $*" | tee -a perf/out/bench.md; $PY -m perf.bench "$@" | tee -a perf/out/bench.md; }
run --frames 500  --shape 1024 1024 --dtype uint16 --ranks 1 2 3 4 --repeat 3
run --frames 2000 --shape 1024 1024 --dtype uint16 --ranks 1 3 --repeat 1
run --frames 100  --shape 2048 2048 --dtype uint32 --ranks 1 2 3 4 --repeat 2
run --frames 300  --shape 1024 1024 --dtype uint16 --ranks 1 3 --repeat 2 --compression gzip-byteshuffle
run --frames 300  --shape 1024 1024 --dtype uint16 --ranks 1 3 --repeat 2 --modes drain \
    --compression none gzip blosc-zstd
# RSS per rank must not grow with scan length: 3 000 vs 20 000 frames (both past the first steps, whose buffers are still growing) (256x256 uint16), 3 ranks
for n in 3000 20000; do
    echo "+ perf.replay_scan --ranks 3 --frames $n --shape 256 256 --batch 10" | tee -a perf/out/bench.md
    $PY -m perf.replay_scan --ranks 3 --frames "$n" --shape 256 256 --batch 10 --json perf/out/rss.jsonl | tee -a perf/out/bench.md
done
# kHz point rates (issue 11): small rows, lag after the scan, against a single-process writer of blisswriter's design
echo "+ perf.point_rate --repeat 3" | tee -a perf/out/bench.md
$PY -m perf.point_rate --repeat 3 | tee -a perf/out/bench.md
# live frames against the very same publisher alone, with the CPU budget per process (issue 11); plot with
# `python3 perf/plot_cpu_budget.py perf/out/ab_live.json` (any Python with matplotlib)
echo "+ perf.ab_live --repeat 5 --variant NXPAR_SERIAL_DRIVER=0" | tee -a perf/out/bench.md
$PY -m perf.ab_live --repeat 5 --variant NXPAR_SERIAL_DRIVER=0 --json perf/out/ab_live.json | tee -a perf/out/bench.md
# one writer process: serial driver + chunks compressed outside HDF5 vs the MPI-IO driver, draining Redis
for r in 1 2; do
    echo "+ perf.ab_live --ranks $r --repeat 3 --preload --variant NXPAR_SERIAL_DRIVER=0" | tee -a perf/out/bench.md
    $PY -m perf.ab_live --ranks "$r" --repeat 3 --preload --variant NXPAR_SERIAL_DRIVER=0 | tee -a perf/out/bench.md
done
# where the two cores go during a live scan; plot with `python3 perf/plot_timeline.py perf/out/timeline.json OUT.png`
echo "+ perf.timeline_live --repeat 3" | tee -a perf/out/bench.md
$PY -m perf.timeline_live --repeat 3 --json perf/out/timeline.json | tee -a perf/out/bench.md
