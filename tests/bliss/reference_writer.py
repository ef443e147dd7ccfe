"""blisswriter 2.0.0 itself (the reference writer) writing scans BLISS published, for comparison.

    reference_writer.py REDIS_URL OUTDIR KEY...     (run in `.venv-bliss`, beside the tier's stack)

Each finished scan (its blissdata Redis key) is written by the wheel's own `NexusScanSubscriber`
(configurable writer, as the ESRF NexusWriter device runs it) into OUTDIR/<n>.h5 (n: the key's index),
not into the scan's file: `ScanInfo.filename` is redirected and master-file links are not made. The
wheel (`.cache-bliss/`, launch/setup_bliss.sh) is imported from inside the zip in this separate
process only, so BLISS's `blisswriter` stand-ins (launch/bliss_env/) are untouched. blissdata 2.4.5
has no `blissdata.streams.lima2` (it moved to the blissdata_lima2 plugin): a stand-in class is given
for the name the subscriber imports; the tier publishes no Lima2 stream. Prints one line per scan:
`REFERENCE <n> <state>`.
"""
from __future__ import annotations

import logging
import sys
import types
from pathlib import Path

WHEEL = Path(__file__).resolve().parents[2] / ".cache-bliss" / "blisswriter-2.0.0-py3-none-any.whl"


def _import_reference():
    sys.path.insert(0, str(WHEEL))  # before the stand-ins' .pth entry
    try:
        import blissdata.streams.lima2  # noqa: F401
    except ImportError:
        lima2 = types.ModuleType("blissdata.streams.lima2")
        lima2.Lima2Stream = type("Lima2Stream", (), {})  # never an instance: no Lima2 in the tier
        sys.modules["blissdata.streams.lima2"] = lima2
    from blisswriter.parameters import default_saveoptions
    from blisswriter.subscribers.scan_subscriber import NexusScanSubscriber
    from blisswriter.writer import info, scan

    assert Path(sys.modules["blisswriter"].__file__).is_relative_to(WHEEL), "not the wheel's blisswriter"
    scan.ScanWriter._create_master_links = lambda self, subscan: None
    return NexusScanSubscriber, default_saveoptions, info.ScanInfo


def main() -> None:
    url, outdir, keys = sys.argv[1], Path(sys.argv[2]), sys.argv[3:]
    logging.basicConfig(level=logging.WARNING)
    subscriber_class, saveoptions, scan_info_class = _import_reference()
    from blissdata.redis_engine.store import DataStore

    store = DataStore(url)
    for n, key in enumerate(keys):
        out = str(outdir / f"{n}.h5")
        scan_info_class.filename = property(lambda self, out=out: out)
        subscriber = subscriber_class(store.load_scan(key), **saveoptions(configurable=True))
        subscriber.start(block=True, timeout=60)
        subscriber.join(timeout=120)
        print(f"REFERENCE {n} {subscriber.state.name}", flush=True)


if __name__ == "__main__":
    main()
