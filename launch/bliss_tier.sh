#!/usr/bin/env bash
# The real-BLISS test tier (tests/bliss/): BLISS 2.4.0 + Beacon + nxpar's writer, in a network
# namespace of its own (Beacon and BLISS must not meet another run's servers; everything binds
# 127.0.0.1 inside it). Needs root (CI runs as root) or an unprivileged user namespace.
#   launch/bliss_tier.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
bash launch/setup_bliss.sh   # (nxpar's own venv: make setup)
userns=()
[[ $(id -u) == 0 ]] || userns=(--user --map-root-user)
exec unshare "${userns[@]}" --net -- bash -c '
    ip link set lo up
    export NXPAR_BLISS_TIER=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
    exec .venv/bin/python -m pytest -v -p no:cacheprovider tests/bliss "$@"' bash "$@"
