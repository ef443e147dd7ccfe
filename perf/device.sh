#!/usr/bin/env bash
# The scaling tables on REAL cores, in one command of under 8 minutes, for a lent many-core machine
# (the `device` tool) or any Linux box with more cores than the development machine:
#
#     bash perf/device.sh                 # writes perf/results/device-*.json, regenerates perf/SCALING.md
#
# What it runs is `python -m perf suite device` (perf/suites.py): the emulated-box benchmark with
# `--real` (no CPU slices: every process on real cores; 1, 2, 4, … writer ranks up to cores − 3, three
# schemes, drain and live, with the single-process baselines), a live A/B with 4 writer ranks, and the
# kHz mixed scan at 1, 3 and 9 ranks. Each entry is stopped if the whole would pass 7.5 minutes.
#
# Needs the project's environment (`make setup`: Debian's MPICH and hdf5-mpich, the .venv); when the
# venv is missing it runs launch/setup.sh, which needs the network. Under the `device` tool the JSON,
# the regenerated SCALING.md and the log are copied to $OUT. perf/SCALING.md ("On real cores") says
# what a lent machine of this workplace lacks and how to bring it.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DEADLINE=$((SECONDS + 450))
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD

if [[ ! -x $PY ]]; then
    echo "[device] no $PY: running launch/setup.sh (needs the network)"
    bash launch/setup.sh || { echo "[device] set-up failed: see perf/SCALING.md, 'On real cores'"; exit 2; }
fi
echo "[device] $(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GiB, $(uname -r); commit $(git rev-parse --short HEAD 2>/dev/null)"
mkdir -p perf/out
status=0
for entry in device-scaling device-live device-points; do
    left=$((DEADLINE - SECONDS))
    if ((left < 30)); then
        echo "[device] $entry skipped: the 8-minute budget is spent"
        status=1
        continue
    fi
    timeout --signal=TERM --kill-after=60 "$left" "$PY" -m perf suite device --only "$entry" --no-report || status=1
done
"$PY" -m perf report
if [[ -n ${OUT:-} ]]; then
    cp perf/results/device-*.json perf/SCALING.md "$OUT"/ 2>/dev/null
    cp perf/out/suite-device.log "$OUT"/ 2>/dev/null
fi
exit $status
