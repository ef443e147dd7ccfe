"""Lima2 and Mosca scans as BLISS publishes them, with the files Lima2 and Mosca write.

Streams are made by the plugins' own classes (`Lima2Stream.make_definition`,
`MoscaStream.make_definition`) on the real Redis; the files with h5py, laid out as lima2-client
4.3 (receivers' files + master VDS, `lima2/conductor/processing/master_file.py`: the master file
is written only when the acquisition ends) and mosca 2.0.5 (`mosca/control/tasks/saving.py`:
MoscaFile) write them; `Lima2Files` grows the receivers' files frame by frame, as during a scan.

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
import socket
import sys
import threading
import time
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

    def blackhole(self) -> socket.socket:
        """The conductor's port then accepts connections (the kernel's backlog) and never answers:
        what a client sees of a hung conductor; without a timeout its requests wait for ever."""
        self.stop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(64)
        return sock


# -- files ------------------------------------------------------------------------------------------
class Lima2Files:
    """Lima2's files for one frame channel, written as the receivers and the conductor write them:
    receivers' files `<det>_<source>_<rcv>_<NNNNN>.h5` ((n, C, H, W), bitshuffle-LZ4, frames dealt
    round robin, `per_file` frames a file, grown frame by frame, each file closed when full) during
    the acquisition, and the master file's VDS (n,) + stream shape over them at the end.

    What a test may make the receivers do out of step: `write(..., hold=...)` keeps some
    receivers' frames back (written by a later `write`: a receiver whose first file comes late),
    `open_next(rcv)` creates a receiver's next file before its current one is full (a file that
    looks closed, its next one being there, but does not hold all its frames yet)."""

    def __init__(self, directory: Path, det: str, source: str, stream_shape: tuple[int, ...], dtype: str = "uint16",
                 receivers: int = 2, per_file: int = 3, ordering: list[int] | None = None) -> None:
        directory.mkdir(exist_ok=True)
        self.directory, self.prefix = directory, f"{det}_{source}"
        self.data_path = f"entry_0000/ESRF-id00/{det}/data"
        self.shape, self.dtype = tuple(stream_shape), np.dtype(dtype)
        self.file_shape = (1,) * (3 - len(self.shape)) + self.shape
        self.receivers, self.per_file, self.written = receivers, per_file, 0
        self.ordering = ordering or list(range(receivers))  # lima2's RoundRobin: frame i to ordering[i % R]
        self.local = [0] * receivers  # frames each receiver has written

    @property
    def master_file(self) -> tuple[str, str]:
        return (str(self.directory / f"{self.prefix}_master.h5"), self.data_path)

    def receiver_file(self, rcv: int, number: int) -> str:
        return f"{self.prefix}_{rcv}_{number:05d}.h5"

    def write(self, frames: np.ndarray, hold: tuple[int, ...] = ()) -> None:
        """Those of `frames` not written yet appended to the receivers' files, but for the
        receivers in `hold` (their frames wait for a later call)."""
        for i in range(len(frames)):
            rcv, local = self.ordering[i % self.receivers], i // self.receivers
            if rcv in hold or local < self.local[rcv]:
                continue
            number, index = divmod(local, self.per_file)
            with h5py.File(self.directory / self.receiver_file(rcv, number), "a") as f:
                d = self._dataset(f)
                d.resize(index + 1, axis=0)
                d[index] = frames[i].reshape(self.file_shape)
            self.local[rcv] = local + 1
        self.written = max(self.written, len(frames))

    def _dataset(self, f: h5py.File) -> h5py.Dataset:
        d = f.get(self.data_path)
        return d if d is not None else f.create_dataset(
            self.data_path, shape=(0,) + self.file_shape, maxshape=(self.per_file,) + self.file_shape,
            dtype=self.dtype, chunks=(1,) + self.file_shape, **hdf5plugin.Bitshuffle(cname="lz4"))

    def open_next(self, rcv: int) -> None:
        """The receiver's next file created (empty) while its current one may not be full yet."""
        with h5py.File(self.directory / self.receiver_file(rcv, self.local[rcv] // self.per_file + 1), "a") as f:
            self._dataset(f)

    def write_master(self) -> None:
        """The conductor's master file, once the acquisition has ended (lookup table complete)."""
        n = self.written
        layout = h5py.VirtualLayout(shape=(n,) + self.shape, dtype=self.dtype)
        for rcv in range(self.receivers):
            mine = np.arange(self.ordering.index(rcv), n, self.receivers, dtype=np.uint32)
            for number, lo in enumerate(range(0, len(mine), self.per_file)):
                index = mine[lo:lo + self.per_file]
                layout[index] = h5py.VirtualSource(self.receiver_file(rcv, number), self.data_path,
                                                   shape=(len(index),) + self.file_shape)
        with h5py.File(self.master_file[0], "w") as f:
            d = f.create_virtual_dataset(self.data_path, layout)
            d.attrs["interpretation"] = "image"
            f["entry_0000/measurement/data"] = d


def write_lima2_files(directory: Path, det: str, source: str, frames: np.ndarray, stream_shape: tuple[int, ...],
                      receivers: int = 2, per_file: int = 3, master: bool = True) -> tuple[str, str]:
    """All frames in the receivers' files and, when `master`, the master file (written at the end of
    the acquisition); returns the stream's `master_file`."""
    files = Lima2Files(directory, det, source, stream_shape, str(frames.dtype), receivers, per_file)
    files.write(frames)
    if master:
        files.write_master()
    return files.master_file


class MoscaStandInServer:
    """tests/mosca_standin.py as a Tango device server of the stack (free port on 127.0.0.1,
    stopped by its PID): what mosca-client reads from when Mosca does not save."""

    def __init__(self, stack: Any, device: str, detectors: list[int], size: int) -> None:
        import tango

        host, port = stack.env["TANGO_HOST"].split(":")
        db = tango.Database(host, int(port))
        instance = device.replace("/", "_")
        info = tango.DbDevInfo()
        info.name, info._class, info.server = device, "MoscaStandIn", f"mosca_standin/{instance}"
        db.add_device(info)
        db.put_device_property(device, {"spectrum_size": [str(size)], "enabled_detectors": [str(d) for d in detectors]})
        self.device = device
        self.proc = stack._spawn(f"mosca_{instance}", [sys.executable, str(ROOT / "tests" / "mosca_standin.py"),
                                                     instance])
        deadline = time.monotonic() + 30
        while True:
            try:
                self.proxy = tango.DeviceProxy(device)
                self.proxy.ping()
                break
            except tango.DevFailed:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise
                time.sleep(0.2)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


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
    mosca_url: str = "id00/mosca/fx"  # the Mosca Tango device (read when Mosca does not save)
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
                f"fx:spectrum:spec_det{det:02d}", det, len(self.spectra), "uint32", (m["size"],), self.mosca_url, 7,
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

    def close_if_open(self) -> None:
        """After a failed test: the scan closed, so that its stream sinks' threads end (else the
        test process waits for them at exit)."""
        if self.scan.state.name == "CLOSED":
            return
        for step in (self.scan.stop, self.scan.close):
            try:
                step()
            except Exception:  # a test already failed: its own error is the one to see
                pass
