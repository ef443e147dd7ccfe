#!/usr/bin/env bash
# The real-BLISS test tier (tests/bliss/): BLISS 2.4.0 + Beacon + nxpar's writer, in a network
# namespace of its own (Beacon and BLISS must not meet another run's servers; everything binds
# 127.0.0.1 inside it). Needs root (CI runs as root) or unprivileged user namespaces.
#   launch/bliss_tier.sh [pytest args]        e.g. launch/bliss_tier.sh -k mesh
set -euo pipefail
cd "$(dirname "$0")/.."
bash launch/setup_bliss.sh   # (nxpar's own venv: make setup)
if unshare --net true 2>/dev/null; then ns=(--net)
elif unshare --user --map-root-user --net true 2>/dev/null; then ns=(--user --map-root-user --net)
else
    echo "bliss_tier: cannot make a network namespace (unshare --net, as root or in a user namespace)" >&2
    exit 1
fi
exec unshare "${ns[@]}" -- bash -c '
    ip link set lo up
    export NXPAR_BLISS_TIER=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
    exec .venv/bin/python -m pytest -v -p no:cacheprovider tests/bliss "$@"' bash "$@"
