"""RANK 0 ONLY: the one call to the Lima2 conductor that loading a scan makes, bounded in time.

blissdata builds a Lima2 stream with the `lima2` plugin (blissdata-lima2 2.0.2), whose
`Lima2Stream.__init__` runs lima2-client's handshake: `GET /version/conductor` through a
`requests.Session` with no timeout (lima2-client 4.3.2, `lima2/client/services.py`
`ConductorServices.handshake`, `lima2/client/session.py`). A conductor host that drops packets
holds the scan's load for the TCP connect timeout (minutes); one that accepts the connection and
never answers holds it for ever. nxpar needs nothing from the conductor (frames are read from
Lima2's files), so the plugin is wrapped: the conductor is first asked the same question with a
timeout, and the plugin's own stream is built only if it answered, itself within a time limit
(a build that ran out of time counts as a failure of that conductor, and while its thread is still
stuck no other build for that conductor starts). Otherwise blissdata gets an exception and makes
the stream a `BrokenPluginStream`: the channel is written from its events and files, with a
warning (`nxpar.driver.plugin_streams`).
"""
from __future__ import annotations

import http.client
import logging
import threading
import time
from typing import Any

from .blissdata_raw import plugin_entry, use_plugin

log = logging.getLogger("nxpar.scan")

TIMEOUT_S = 2.0  # connect, and each read, of a call to the conductor
BUILD_TIMEOUT_S = 5.0  # the plugin's stream (its own handshake included), once the conductor answered
FAILURE_MEMORY_S = 30.0  # a conductor that did not answer is not asked again for this long (other channels)


class ConductorUnreachable(RuntimeError):
    """The Lima2 conductor did not answer within the time limit."""


class BuildTimeout(ConductorUnreachable):
    """`within`'s call did not return within its time limit."""


class BoundedLima2Plugin:
    """Stands for the `blissdata_lima2` module in blissdata's plugin table: same attributes, but
    `stream_cls` asks the conductor with a timeout first."""

    def __init__(self, entry: Any, timeout_s: float = TIMEOUT_S) -> None:
        self.entry = entry  # the plugin's entry point, loaded on first use (lima2-client is heavy)
        self.timeout_s = timeout_s
        self.failures: dict[tuple[str, int], tuple[float, str]] = {}
        self.builds: dict[tuple[str, int], threading.Thread] = {}  # the last build thread per conductor
        self._lock = threading.Lock()
        self._plugin: Any = None

    @property
    def plugin(self) -> Any:
        if self._plugin is None:
            self._plugin = self.entry.load()
        return self._plugin

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name in ("entry", "timeout_s", "failures", "builds"):
            raise AttributeError(name)
        return getattr(self.plugin, name)

    def stream_cls(self, event_stream: Any) -> Any:
        info = event_stream.info
        where = (str(info["conductor_hostname"]), int(info["conductor_port"]))
        why = self._unreachable(where)
        if why:
            raise ConductorUnreachable(f"Lima2 conductor {where[0]}:{where[1]} {why}")
        try:
            return within(BUILD_TIMEOUT_S, self.plugin.stream_cls, event_stream,
                          started=lambda thread: self._started(where, thread))
        except BuildTimeout:
            why = f"did not let the Lima2 stream be built within {BUILD_TIMEOUT_S:g} s"
            self._failed(where, why)
            raise ConductorUnreachable(f"Lima2 conductor {where[0]}:{where[1]} {why}") from None

    def _building(self, where: tuple[str, int]) -> str | None:
        """Why no stream may be built now: an earlier build for this conductor is still stuck."""
        thread = self.builds.get(where)
        if thread is not None and thread.is_alive():
            return "is still building an earlier Lima2 stream (its call has not returned)"
        return None

    def _started(self, where: tuple[str, int], thread: threading.Thread) -> None:
        """Register a build thread, refused if another one for this conductor is still alive."""
        with self._lock:
            why = self._building(where)
            if why:
                raise ConductorUnreachable(f"Lima2 conductor {where[0]}:{where[1]} {why}")
            self.builds[where] = thread
            thread.start()

    def _failed(self, where: tuple[str, int], why: str) -> None:
        self.failures[where] = (time.monotonic(), why)
        log.warning("Lima2 conductor %s:%d: %s", where[0], where[1], why)

    def _unreachable(self, where: tuple[str, int]) -> str | None:
        """Why the conductor cannot be used (None: it answered), remembered for a while; a build
        for it still stuck is a reason too (not asked then)."""
        failed_at, why = self.failures.get(where, (0.0, ""))
        if why and time.monotonic() - failed_at < FAILURE_MEMORY_S:
            return why
        building = self._building(where)
        if building:
            return building
        why = ask_version(where[0], where[1], self.timeout_s)
        if why:
            self._failed(where, why)
        else:
            self.failures.pop(where, None)
        return why


def ask_version(host: str, port: int, timeout_s: float) -> str | None:
    """The handshake's request, with a timeout; None if the conductor answered 200."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout_s)
    try:
        conn.request("GET", "/version/conductor")
        status = conn.getresponse().status
    except TimeoutError:
        return f"did not answer within {timeout_s:g} s"
    except OSError as e:
        return f"is unreachable ({type(e).__name__}: {e})"
    except http.client.HTTPException as e:
        return f"answered badly ({type(e).__name__}: {e})"
    finally:
        conn.close()
    return None if status == 200 else f"answered HTTP {status}"


def within(timeout_s: float, make: Any, *args: Any, started: Any = None) -> Any:
    """make(*args) in a thread, given up after timeout_s (the thread is left to end on its own);
    `started(thread)`, if given, starts the thread (and may refuse to, by raising)."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = make(*args)
        except BaseException as e:  # handed to the caller
            box["error"] = e

    thread = threading.Thread(target=run, name="lima2-stream", daemon=True)
    if started is None:
        thread.start()
    else:
        started(thread)
    thread.join(timeout_s)
    if thread.is_alive():
        raise BuildTimeout(f"not done within {timeout_s:g} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


def bound_lima2_handshakes(timeout_s: float = TIMEOUT_S) -> None:
    """Put the bounded plugin in blissdata's plugin table (once; nothing if the plugin is missing:
    blissdata then makes a MissingPluginStream without calling anyone)."""
    entry = plugin_entry("lima2")
    if entry is not None:
        before = use_plugin("lima2", BoundedLima2Plugin(entry, timeout_s))
        if isinstance(before, BoundedLima2Plugin):
            use_plugin("lima2", before)  # already bound: keep its memory of failed conductors
