#!/usr/bin/env bash
# Idempotent, cached set-up of the REFERENCE writer: blisswriter 2.0.0 (ESRF's NexusWriter Tango
# service) runnable beside BLISS 2.4.0's environment, to compare nxpar with it (make compare-reference,
# tests/bliss/test_reference.py; docs/reference_comparison.md).
#
#   .venv-reference/  a venv of .venv-bliss's Python with only blisswriter 2.0.0 in it, installed
#                     --no-deps --no-index from the wheel launch/setup_bliss.sh downloaded and pinned
#                     (.cache-bliss/, sha256 checked here again); console scripts NexusWriterService,
#                     RegisterNexusWriter, NexusSessionWriter in .venv-reference/bin.
#   nxpar_reference.pth  its dependencies are .venv-bliss's (blissdata 2.4.5, pytango, h5py, silx,
#                     psutil, pyicat-plus, querypool: a plain path line, so .venv-bliss's own .pth files
#                     — launch/bliss_env/'s blisswriter stand-ins — are NOT loaded), then
#                     launch/reference_env/ and `import blisswriter_compat`: the one shim blisswriter
#                     2.0.0 needs with blissdata 2.4.5 (blissdata.streams.lima2, spec §0.1).
#
# Offline (no download: the wheel is setup_bliss.sh's), so the tier can run it inside its network
# namespace. A stamp keyed on (this script, the shim, BLISS's pins, the wheel's sha256) makes a second
# run a no-op; any change rebuilds the venv from scratch. Never commits nor copies blisswriter's code.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BLISS_VENV=${NXPAR_BLISS_VENV:-$ROOT/.venv-bliss}
VENV=${NXPAR_REFERENCE_VENV:-$ROOT/.venv-reference}
WHEEL=$ROOT/.cache-bliss/blisswriter-2.0.0-py3-none-any.whl
WHEEL_SHA256=0b8d27910cd5bfe48e5abc5d0f659540e741f1b9a20391d7f3cd2daa3518fb75  # = launch/setup_bliss.sh's pin
SHIM=$ROOT/launch/reference_env
STAMP=$VENV/.nxpar-reference-stamp
log() { printf '[setup-reference] %s\n' "$*"; }

[[ -x $BLISS_VENV/bin/python ]] || { log "no $BLISS_VENV: run launch/setup_bliss.sh (make setup-bliss) first"; exit 1; }
echo "$WHEEL_SHA256  $WHEEL" | sha256sum --check --status 2>/dev/null \
    || { log "$WHEEL missing or not the pinned one: run launch/setup_bliss.sh (it downloads it)"; exit 1; }

key=$(cat launch/setup_reference.sh "$SHIM/blisswriter_compat.py" requirements/bliss.txt <(echo "$WHEEL_SHA256" \
      "$BLISS_VENV") | sha256sum | cut -c1-16)
if [[ -f $STAMP && $(cat "$STAMP") == "$key" && -x $VENV/bin/NexusWriterService ]]; then
    log "cached ($key): nothing to rebuild"
    exit 0
fi

rm -rf "$VENV"
log "creating $VENV ($("$BLISS_VENV/bin/python" --version), .venv-bliss's interpreter) with blisswriter 2.0.0"
"$BLISS_VENV/bin/python" -m venv --without-pip "$VENV"
"$BLISS_VENV/bin/python" -m pip --disable-pip-version-check -q --python "$VENV/bin/python" \
    install --no-deps --no-index "$WHEEL"
SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
BLISS_SITE=$("$BLISS_VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
printf '%s\n' "$BLISS_SITE" "$SHIM" "import blisswriter_compat" > "$SITE/nxpar_reference.pth"

# --- checks: fail loudly -----------------------------------------------------------------------
"$VENV/bin/python" -W ignore::FutureWarning - "$VENV" <<'PY'
import importlib.metadata as md
import sys
venv = sys.argv[1]
import blisswriter.app.service  # noqa: F401  (the console script's module: the whole writer imports)
import blisswriter
from blissdata.streams.lima2 import Lima2Stream
assert blisswriter.__file__.startswith(venv), blisswriter.__file__
assert not any("bliss_env" in p for p in sys.path), "launch/bliss_env (BLISS's stand-ins) is on the path"
assert md.version("blisswriter") == "2.0.0", md.version("blisswriter")
print(f"[setup-reference] blisswriter {md.version('blisswriter')}, blissdata {md.version('blissdata')}, "
      f"pytango {md.version('pytango')}, h5py {md.version('h5py')}; Lima2Stream = {Lima2Stream.__module__}")
PY
echo "$key" > "$STAMP"
log "done ($key)"
