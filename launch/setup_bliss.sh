#!/usr/bin/env bash
# Idempotent, cached set-up of the BLISS venv of the real-BLISS test tier (.venv-bliss).
#
#   bliss 2.4.0 + pinned dependencies from PyPI (requirements/bliss.txt, installed --no-deps so that
#   bliss's pin blisswriter<1.1 is not pulled in), launch/bliss_env/ (stand-ins for blisswriter 1.x
#   and flint) on its sys.path through a .pth file. Needs the nxpar venv (launch/setup.sh) for the
#   servers; iproute2 + util-linux for the network namespace of the tier.
#   blisswriter 2.0.0's wheel, downloaded (never installed) into .cache-bliss/ of this checkout: BLISS's
#   side of the channel mapping loads its own two pure modules from it (launch/bliss_env/blisswriter/
#   mapping/reference.py); the fast tier compares nxpar's mapping with it (tests/unit/test_mapping_reference.py).
#
# A stamp keyed on (pins, this script) makes a second run a no-op; change a pin and it rebuilds. The
# wheel is checked (sha256) on every run and downloaded again only when missing or different.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=${NXPAR_BLISS_VENV:-$ROOT/.venv-bliss}
# bliss 2.4.0 needs numpy<2, which has no wheels (nor builds) beyond Python 3.12: take a 3.11/3.12.
pick_python() {
    for py in ${NXPAR_BLISS_PYTHON:-} python3.12 python3.11 python3; do
        command -v "$py" >/dev/null && "$py" -c 'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] <= (3, 12))' 2>/dev/null \
            && { echo "$py"; return; }
    done
    echo "[setup-bliss] bliss 2.4.0 needs Python 3.11 or 3.12 (numpy<2); none found:" \
         "set NXPAR_BLISS_PYTHON to one" >&2
    return 1
}
PINS=requirements/bliss.txt
STAMP=$VENV/.nxpar-bliss-stamp
log() { printf '[setup-bliss] %s\n' "$*"; }

# the reference channel mapping: blisswriter 2.0.0's wheel (PyPI), pinned by its sha256
REFERENCE=blisswriter==2.0.0
REFERENCE_WHEEL=$ROOT/.cache-bliss/blisswriter-2.0.0-py3-none-any.whl
REFERENCE_SHA256=0b8d27910cd5bfe48e5abc5d0f659540e741f1b9a20391d7f3cd2daa3518fb75
reference_ok() { [[ -f $REFERENCE_WHEEL ]] && echo "$REFERENCE_SHA256  $REFERENCE_WHEEL" | sha256sum --check --status; }
fetch_reference() {
    reference_ok && return
    log "downloading $REFERENCE's wheel (the reference channel mapping) into ${REFERENCE_WHEEL%/*}"
    local tmp
    tmp=$(mktemp -d)
    "$VENV/bin/python" -m pip --disable-pip-version-check -q download --no-deps --only-binary=:all: \
        -d "$tmp" "$REFERENCE"
    mkdir -p "${REFERENCE_WHEEL%/*}"
    mv "$tmp/${REFERENCE_WHEEL##*/}" "$REFERENCE_WHEEL"
    rm -rf "$tmp"
    reference_ok || { log "$REFERENCE_WHEEL: not the sha256 pinned here ($REFERENCE_SHA256)"; exit 1; }
}

key=$(cat "$PINS" launch/setup_bliss.sh | sha256sum | cut -c1-16)
if [[ -f $STAMP && $(cat "$STAMP") == "$key" ]]; then
    fetch_reference   # the venv may be another checkout's (.venv-bliss linked): its wheel is this one's
    log "cached ($key): nothing to rebuild"
    exit 0
fi

for tool in ip unshare; do
    command -v $tool >/dev/null || { log "apt-get install iproute2 util-linux"; DEBIAN_FRONTEND=noninteractive \
        apt-get update -qq && apt-get install -y -qq --no-install-recommends iproute2 util-linux >/dev/null; break; }
done

if [[ ! -x $VENV/bin/python ]]; then
    PYTHON=$(pick_python)
    log "creating $VENV with $($PYTHON --version)"
    $PYTHON -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
"${PIP[@]}" install --upgrade pip setuptools wheel
log "installing $(grep -c '==' "$PINS") pinned packages (bliss $(grep -E '^bliss==' "$PINS" | cut -d= -f3))"
"${PIP[@]}" install --no-deps -r "$PINS"

SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$ROOT/launch/bliss_env" > "$SITE/nxpar_bliss_env.pth"
fetch_reference

# --- checks: fail loudly -----------------------------------------------------------------------
"$VENV/bin/python" - <<'PY'
import importlib.metadata as md
import bliss.shell.standard, bliss.scanning.writer.external_tango, blissdata  # noqa: F401
import blisswriter, flint
from blisswriter.mapping import devices, reference
assert "bliss_env" in blisswriter.__file__ and "bliss_env" in flint.__file__, (blisswriter.__file__, flint.__file__)
# BLISS's side of the channel mapping is blisswriter 2.0.0's own, loaded from the wheel
assert reference.nexus_devices().__file__.startswith(str(reference.WHEEL)), reference.nexus_devices().__file__
assert devices.get_primary_dataset_path("axis:robx", devices.all_devices_info({}, {
    "acquisition_chain": {"axis": {"devices": ["axis"]}}, "channels": {"axis:robx": {"dim": 0}},
    "devices": {"axis": {"channels": ["axis:robx"], "triggered_devices": ["timer"]}}})["axis"]) == "instrument/robx/value"
try:
    md.version("blisswriter")
    raise SystemExit("a blisswriter distribution is installed: remove it (launch/bliss_env/ replaces it)")
except md.PackageNotFoundError:
    pass
print(f"[setup-bliss] bliss {md.version('bliss')}, blissdata {md.version('blissdata')}, "
      f"pytango {md.version('pytango')}, numpy {md.version('numpy')}")
PY
[[ -x $VENV/bin/beacon-server && -x $VENV/bin/memory_tracker ]] || { echo "beacon-server/memory_tracker missing" >&2; exit 1; }

echo "$key" > "$STAMP"
log "done ($key)"
