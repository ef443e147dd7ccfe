"""Lima2 and Mosca scans as BLISS publishes them, with the files Lima2 and Mosca write.

Streams are made by the plugins' own classes (`Lima2Stream.make_definition`,
`MoscaStream.make_definition`) on the real Redis; the files with h5py, laid out as lima2-client
4.3 (receivers' files + master VDS, `lima2/conductor/processing/master_file.py`) and mosca 2.0.5
(`mosca/control/tasks/saving.py`: MoscaFile) write them.

Creating a Lima2 stream runs the plugin's handshake with the Lima2 conductor (GET
/version/conductor). The conductor itself drives Lima2's Tango devices and detectors, which a
test cannot have: `ConductorVersion` is a real HTTP server on 127.0.0.1 answering that one
request with lima2-client's version, and nothing else; stopping it makes the conductor
unreachable.
"""
from __future__ import annotations

import http.server
import json
import os
import threading
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import h5py
import hdf5plugin
import numpy as np

from launch.simulate import ScanSpec, scan_info

ROOT = Path(__file__).resolve().parent.parent


def service_env(plugins: bool) -> dict[str, str]:
    """PYTHONPATH of a writer service: with the plugins (a private `.plugins` folder when the venv
    lacks them), or with them hidden (`tests/no_plugins/sitecustomize.py`)."""
    paths = [str(ROOT)]
    if plugins and (ROOT / ".plugins").is_dir():
        paths.append(str(ROOT / ".plugins"))
    if not plugins:
        paths.insert(0, str(ROOT / "tests" / "no_plugins"))
    return {"PYTHONPATH": os.pathsep.join(paths)}


class ConductorVersion:
    """Answers the Lima2 client's handshake (GET /version/conductor), on a free port of 127.0.0.1."""

    def __init__(self) -> None:
        body = json.dumps(version("lima2-client")).encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                code = 200 if self.path == "/version/conductor" else 404
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body if code == 200 else b'"not found"')

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# -- files ------------------------------------------------------------------------------------------
def write_lima2_files(directory: Path, det: str, source: str, frames: np.ndarray, stream_shape: tuple[int, ...],
                      receivers: int = 2, per_file: int = 3, master: bool = True) -> tuple[str, str]:
    """Receivers' files `<det>_<source>_<rcv>_<NNNNN>.h5` ((n, C, H, W), bitshuffle-LZ4, frames dealt
    round robin) and, when `master`, the master file's VDS (n,) + stream_shape over them, as the
    conductor writes it at the end of the acquisition. Returns the stream's `master_file`."""
    directory.mkdir(exist_ok=True)
    prefix = f"{det}_{source}"
    data_path = f"entry_0000/ESRF-id00/{det}/data"
    n = len(frames)
    c, h, w = (frames.shape[1:] if frames.ndim == 4 else (1,) + frames.shape[1:])
    frames4 = frames.reshape((n, c, h, w))
    layout = h5py.VirtualLayout(shape=(n,) + tuple(stream_shape), dtype=frames.dtype)
    for rcv in range(receivers):
        mine = np.arange(rcv, n, receivers, dtype=np.uint32)
        for number, lo in enumerate(range(0, len(mine), per_file)):
            index = mine[lo:lo + per_file]
            name = f"{prefix}_{rcv}_{number:05d}.h5"
            with h5py.File(directory / name, "w") as f:
                f.create_dataset(data_path, data=frames4[index], chunks=(1, c, h, w),
                                 **hdf5plugin.Bitshuffle(cname="lz4"))
            layout[index] = h5py.VirtualSource(name, data_path, shape=(len(index), c, h, w))
    master_path = directory / f"{prefix}_master.h5"
    if master:
        with h5py.File(master_path, "w") as f:
            d = f.create_virtual_dataset(data_path, layout)
            d.attrs["interpretation"] = "image"
            f["entry_0000/measurement/data"] = d
    return (str(master_path), data_path)


def write_mosca_files(directory: Path, ctrl: str, spectra: np.ndarray, detectors: list[int], per_file: int,
                      first_file: int = 0, files: int | None = None) -> dict[str, Any]:
    """Mosca's spectra files (MoscaFile: `<prefix>spectra_<NNNN>.h5`, `<data_path>/spectra_<det:02d>`,
    chunks (1, size), bitshuffle, maxshape (points_per_file, size)); returns the stream's saving info.
    spectra: (detectors, points, size); files [first_file, first_file + files) are written."""
    directory.mkdir(exist_ok=True)
    ndet, n, size = spectra.shape
    data_path = f"/entry_0000/{ctrl}/data"
    numbers = range(first_file, min(first_file + (files or n), -(-n // per_file)))
    for number in numbers:
        block = spectra[:, number * per_file:(number + 1) * per_file]
        # Mosca asks libver ("v110", "v114"); Debian's HDF5 1.10 knows no v114: "latest" is the same bound there
        with h5py.File(directory / f"{ctrl}_spectra_{number:04d}.h5", "w", libver=("v110", "latest")) as f:
            for i, det in enumerate(detectors):
                d = f.create_dataset(f"{data_path}/spectra_{det:02d}", shape=(0, size), maxshape=(per_file, size),
                                     dtype=spectra.dtype, compression=hdf5plugin.Bitshuffle(), chunks=(1, size))
                d.resize(block.shape[1], axis=0)
                d[:] = block[i]
    return {"file_path": str(directory), "file_prefix": f"{ctrl}_", "data_path": data_path, "file_format": "hdf5",
            "points_per_file": per_file, "saving_enabled": True, "enabled_detectors": list(detectors)}


# -- the scan ---------------------------------------------------------------------------------------
@dataclass
class PluginScan:
    """A timer scan with scalars, Lima2 frame channels and Mosca spectra + one stat per element."""

    url: str
    session: str
    filename: str
    nb: int
    npoints: int
    lima2: dict[str, dict[str, Any]] = field(default_factory=dict)  # channel → {shape, dtype, master_file}
    mosca: dict[int, dict[str, Any]] = field(default_factory=dict)  # detector → {size, saving}
    conductor_port: int = 0
    chunk_options: dict[str, Any] = field(default_factory=lambda: {"compression_limit_nbytes": 0})

    def create(self):
        from blissdata.redis_engine.store import DataStore
        from blissdata.streams.default import Stream
        from blissdata_lima2 import Lima2Stream
        from blissdata_mosca import MoscaStream

        info = self.info()
        identity = {"name": "loopscan", "number": self.nb, "data_policy": "None", "session": self.session,
                    "path": self.filename}
        self.scan = DataStore(self.url).create_scan(identity, info=info)
        self.scalars = {n: self.scan.create_stream(Stream.make_definition(n, "float64", ()))
                        for n in ("timer:elapsed_time", "timer:epoch", "diode_ctrl:diode")}
        self.frames = {}
        for name, c in self.lima2.items():
            det, source = name.split(":")
            self.frames[name] = self.scan.create_stream(Lima2Stream.make_definition(
                name, source_name=source, conductor_hostname="127.0.0.1", conductor_port=self.conductor_port,
                acq_uuid="2b0c4ee6-1111-4c47-9bd5-1d8b8a8e0001", master_file=c["master_file"],
                dtype=c["dtype"], shape=c["shape"]))
        self.spectra, self.stats = {}, {}
        for det, m in self.mosca.items():
            self.spectra[det] = self.scan.create_stream(MoscaStream.make_definition(
                f"fx:spectrum:spec_det{det:02d}", det, len(self.spectra), "uint32", (m["size"],), "id00/mosca/fx", 7,
                saving=m["saving"]))
            self.stats[det] = self.scan.create_stream(
                Stream.make_definition(f"fx:stat:icr_det{det:02d}", "float64", ()))
        self.info_dict = info
        return self

    def info(self) -> dict[str, Any]:
        spec = ScanSpec(self.session, self.filename, self.nb, self.npoints, image_shape=None, mca_channels=None,
                        timer_master=True, chunk_options=dict(self.chunk_options))
        info = scan_info(spec)
        chain = info["acquisition_chain"]["timer"]["devices"]
        nxdevices = info["nexuswriter"]["devices"]
        if self.lima2:
            info["devices"]["1007:eiger"] = {"name": "eiger", "channels": list(self.lima2)}
            chain.append("1007:eiger")
            for name in self.lima2:  # recorded before Lima2 knew the shape: dim 3, in no shape group
                info["channels"][name] = {"device": "1007:eiger", "dim": 3}
                nxdevices[name] = {"device_info": {"type": "lima2"}, "device_type": "lima2"}
        if self.mosca:
            names = [f"fx:spectrum:spec_det{d:02d}" for d in self.mosca]
            names += [f"fx:stat:icr_det{d:02d}" for d in self.mosca]
            info["devices"]["1008:fx"] = {"name": "fx", "channels": names}
            chain.append("1008:fx")
            for name in names:
                info["channels"][name] = {"device": "1008:fx", "dim": 1 if ":spectrum:" in name else 0}
                nxdevices[name] = {"device_info": {"type": "mca"}, "device_type": "mosca"}
        info["devices"]["1002:timer"]["triggered_devices"] += [d for d in ("1007:eiger", "1008:fx") if d in chain]
        return info

    def prepare_start(self) -> None:
        self.scan.info = self.info_dict
        self.scan.prepare()
        self.scan.start()

    def points(self, lo: int, hi: int) -> None:
        i = np.arange(lo, hi, dtype=float)
        for name, s in self.scalars.items():
            s.send(i * (2.0 if name == "diode_ctrl:diode" else 0.1))
        for det, s in self.stats.items():
            s.send(1000.0 + i + det)

    def lima2_progress(self, *counts: int) -> None:
        for name, s in self.frames.items():
            for n in counts:
                s.send(np.uint32(n))

    def mosca_status(self, last_read: int, last_saved: int) -> None:
        for s in self.spectra.values():
            s.send({"last_read_index": last_read, "last_saved_index": last_saved})

    def stop_close(self) -> None:
        self.scan.stop()
        info = dict(self.scan.info)
        info["end_reason"] = "SUCCESS"
        self.scan.info = info
        self.scan.close()
