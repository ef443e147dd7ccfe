"""nxpar's plots against the reference writer's, scan by scan, on what real BLISS published.

blisswriter 2.0.0 itself (reference_writer.py, from its wheel, in `.venv-bliss`) writes every scan of
the scenarios below again from the same Redis scan into a file of its own; each entry's `default` and
every `plotselect*` item must then be the same in both files: links and their targets, NXdata
attributes (signal, auxiliary_signals, axes), and for every member its shape, dtype, whether it is
virtual, its attributes and its values. The scenarios span 1D scans, scans ended early (channels of
different lengths), meshes (with detectors that publish more points than the grid), MCA and
FakeController detectors, sequences and two scans at once.
"""
from __future__ import annotations

import subprocess
from pathlib import Path
from pprint import pformat

import h5py
import numpy as np
import pytest

from tests.bliss.bliss_stack import BLISS_VENV

pytestmark = pytest.mark.bliss

SCENARIOS = ("sct", "loopscan", "timescan_bounded", "timescan_aborted", "ascan", "dscan", "a2scan", "amesh",
             "amesh_detectors", "dmesh", "a3mesh", "lookupscan", "pointscan", "mca", "fake_detectors", "sequence",
             "scan_sequence", "failing", "aborted", "two_at_once")


def _plain(value):
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()] if value.dtype == object else value.tolist()
    return value


def plot_tree(filename: str | Path, entry: str) -> dict[str, object]:
    """The entry's `default` and its `plotselect*` items: link → target, group → attributes,
    member → (shape, dtype, virtual, link kind, link target, attributes, values)."""
    tree: dict[str, object] = {}
    with h5py.File(filename, "r", locking=False) as f:
        e = f[entry]
        tree["@default"] = _plain(e.attrs.get("default"))
        for name in sorted(k for k in e if k.startswith("plotselect")):
            link = e.get(name, getlink=True)
            if isinstance(link, h5py.SoftLink):
                tree[name] = f"-> {link.path}"
                continue
            group = e[name]
            tree[name] = {a: _plain(group.attrs[a]) for a in sorted(group.attrs)}
            for member in sorted(group):
                d, link = group[member], group.get(member, getlink=True)
                tree[f"{name}/{member}"] = (d.shape, str(d.dtype), d.is_virtual, type(link).__name__,
                                            getattr(link, "path", None), {a: _plain(d.attrs[a]) for a in sorted(d.attrs)},
                                            d[()])
    return tree


def same(a, b) -> bool:
    if isinstance(a, tuple) and isinstance(b, tuple):
        *meta_a, values_a = a
        *meta_b, values_b = b
        return meta_a == meta_b and np.array_equal(values_a, values_b, equal_nan=values_a.dtype.kind == "f")
    return a == b


@pytest.fixture(scope="module")
def reference_files(ran, bliss_stack, tmp_path_factory):
    """{scan identifier: the reference's file} for every scan of SCENARIOS (one reference process)."""
    scans = [scan for scenario in SCENARIOS for scan in ran(scenario) if scan.filename]
    outdir = tmp_path_factory.mktemp("reference")
    cmd = [str(BLISS_VENV / "bin" / "python"), str(Path(__file__).with_name("reference_writer.py")),
           bliss_stack.env["REDIS_DATA_URL"], str(outdir), *(scan.report["key"] for scan in scans)]
    done = subprocess.run(cmd, env=bliss_stack.bliss_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    states = [line.split()[2] for line in done.stdout.splitlines() if line.startswith("REFERENCE ")]
    assert states == ["OFF"] * len(scans), (states, done.stderr[-4000:])
    return {scan.identifier: outdir / f"{n}.h5" for n, scan in enumerate(scans)}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_plots_are_the_references(ran, reference_files, scenario):
    for scan in ran(scenario):
        if not scan.filename:
            continue
        ours, theirs = plot_tree(scan.filename, scan.entry), plot_tree(reference_files[scan.identifier], scan.entry)
        differences = {k: (ours.get(k), theirs.get(k)) for k in sorted(set(ours) | set(theirs))
                       if not same(ours.get(k), theirs.get(k))}
        assert not differences, f"{scan.identifier} (nxpar, reference):\n{pformat(differences)}"
