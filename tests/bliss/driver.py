"""A BLISS 2.4 session process of the BLISS tier (runs in `.venv-bliss`, not in nxpar's venv).

    driver.py SESSION OUTDIR      (BEACON_HOST, TANGO_HOST, NXBLISS_DATA set by bliss_stack.py)

Sets the session up as `bliss -s SESSION` would, prints `NXBLISS {"event": "ready"}`, then reads one
JSON request per line on stdin (`{"id": N, "scenario": NAME, "args": [...]}`, args optional), runs
that scenario of `scenarios.py` (or of `more_scenarios.py`: the reference comparison's) and answers
`NXBLISS {"event": "done", "id": N, "scans": [...]}`. For every scan it reports what BLISS knows
(number, identifier, file, end state, scan_info) and saves the data BLISS published
(`scan.streams[name][:]`, read back from Redis through blissdata) in OUTDIR/<identifier>_<key>.npz (the
Redis key tells apart two scans of one name: the comparison numbers both writers' runs alike), so the
tests compare the file with BLISS's own values.
"""
from __future__ import annotations

import json
import sys
import traceback
import types
from pathlib import Path


def say(**msg) -> None:
    sys.stdout.write("NXBLISS " + json.dumps(msg, default=str) + "\n")
    sys.stdout.flush()


def scan_report(scan, outdir: Path) -> dict:
    import numpy

    data = {}
    for name, stream in scan.streams.items():
        try:
            values = numpy.asarray(stream[:])
            if values.dtype == object:  # SUBSCANS of a sequence: blissdata scans → their Redis keys
                values = numpy.asarray([getattr(v, "key", str(v)) for v in values.ravel()])
            data[name] = values
        except Exception as e:  # a stream BLISS cannot read back is reported, not hidden
            data[name] = numpy.asarray(f"unreadable: {e!r}")
    identifier = scan.identifier
    npz = outdir / f"{identifier}_{scan._scan_data.key.rpartition(':')[2]}.npz"
    numpy.savez(npz, **{k.replace("/", "|"): v for k, v in data.items()})
    info = scan.scan_info
    return {"identifier": identifier, "key": scan._scan_data.key, "scan_nb": info.get("scan_nb"), "name": scan.name,
            "filename": info.get("filename"), "title": info.get("title"), "state": scan.state.name,
            "end_reason": info.get("end_reason"), "npz": str(npz),
            # where BLISS's HDF5 fallback (Hdf5BackedStream) will read each channel once Redis is trimmed
            "data_paths": {name: s.info.get("data_path") for name, s in scan.streams.items()},
            "scan_info": json.loads(json.dumps(dict(info), default=str))}


def main() -> None:
    session_name, outdir = sys.argv[1], Path(sys.argv[2])
    from bliss.config import static

    session = static.get_config().get(session_name)
    env: dict = {}
    if not session.setup(env_dict=env):
        raise SystemExit(f"session {session_name} set-up failed")
    import gevent.socket

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import more_scenarios
    import scenarios

    scenarios.g = more_scenarios.g = types.SimpleNamespace(**env)  # the session's objects, as in a BLISS shell

    say(event="ready", session=session_name)
    while True:
        gevent.socket.wait_read(sys.stdin.fileno())
        line = sys.stdin.readline()
        if not line:
            break
        request = json.loads(line)
        try:
            name = request["scenario"]
            run = getattr(scenarios, name, None) or getattr(more_scenarios, name)
            scans = run(*request.get("args", ()))
            say(event="done", id=request["id"], scans=[scan_report(s, outdir) for s in scans])
        except BaseException as e:  # report, keep serving the next tests
            say(event="done", id=request["id"], error=f"{e!r}\n{traceback.format_exc()}")
    session.close()


if __name__ == "__main__":
    main()
