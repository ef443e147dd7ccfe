"""blissdata's Redis layout, read without its client where speed matters (all ranks).

blissdata keeps these private (pinned to 2.4.x): the raw stream entries (`StreamEntry`: a batch of
rows with its first index and length; a seal entry closes the stream), the Redis connection of a
data store, the encoder of an event stream, the Lima client's last frame saved in a closed
file, and blissdata's table of plugins. Every use of them in nxpar goes through this module, so a blissdata upgrade is checked here.
"""
from __future__ import annotations

from typing import Any

from blissdata.streams.default import BrokenStream, MissingPluginStream
from blissdata.streams.encoding.numeric import NumericStreamEncoder
from blissdata.streams.event_stream import StreamEntry

# (file format, absolute file path, dataset path in the file or "", frame index in the file)
FrameRef = tuple[str, str, str, int]


def redis_of(obj: Any) -> Any:
    """The Redis client of a blissdata Scan or EventStream (one connection, pipelines allowed)."""
    return obj._data_store._redis


def stream_end(last_raw_entry: Any) -> tuple[int, bool]:
    """(rows published, sealed) from the last raw entry of a stream (XREVRANGE count=1)."""
    entry = StreamEntry.from_raw(last_raw_entry)
    return entry.id + entry.length, entry.is_seal


def data_entries(raw: list[Any]) -> list[StreamEntry]:
    """The row batches of raw stream entries (the seal left out)."""
    return [e for e in (StreamEntry.from_raw(item) for item in raw) if not e.is_seal]


def fixed_numeric(event_stream: Any) -> bool:
    """Can the stream's payloads be decoded as plain arrays (numeric, no variable dimension)?"""
    return isinstance(event_stream._encoder, NumericStreamEncoder) and all(n >= 0 for n in event_stream.shape)


def lima_frames_saved_and_closed(lima_stream: Any) -> int:
    """Frames of a Lima stream that lie in files Lima has closed (all saved ones once sealed).

    blissdata's Lima client works this out from the status events and the file layout.
    """
    len(lima_stream)  # refreshes the client from the last status event
    return int(getattr(lima_stream._client, "_last_index_saved_and_closed", -1)) + 1


def frame_ref(ref: Any) -> FrameRef:
    """blissdata ImageReference → the plain tuple the writer ranks get."""
    return (str(ref.format), str(ref.file_path), str(ref.data_path or ""), int(ref.index))


def broken_plugin(stream: Any) -> str | None:
    """Why blissdata could not load a plugin stream (None: it could)."""
    if not isinstance(stream, BrokenStream):
        return None
    why = "is not installed" if isinstance(stream, MissingPluginStream) else "cannot load the stream"
    return f"{why} ({stream._exception})"


def plugin_entry(name: str) -> Any:
    """The entry point of an installed blissdata plugin (None: not installed)."""
    from blissdata.redis_engine import scan as scan_module

    return scan_module.discovered_plugins.get(name)


def use_plugin(name: str, plugin: Any) -> Any:
    """Make blissdata build the plugin's streams with `plugin` (its table of loaded plugins, which
    it fills itself on first use); returns what was there (None)."""
    from blissdata.redis_engine import scan as scan_module

    before = scan_module.loaded_plugins.get(name)
    scan_module.loaded_plugins[name] = plugin
    return before


def raw_entries(raw: list[Any]) -> list[StreamEntry]:
    """Raw stream entries (XRANGE/XREVRANGE items), the seal included."""
    return [StreamEntry.from_raw(item) for item in raw]


def decode_events(event_stream: Any, entries: list[StreamEntry]) -> list[Any]:
    """The values of raw entries of an event stream (its own decoder)."""
    return event_stream._decode_entries(entries)[1]


def load_scan_info(scan: Any, key: str) -> dict[str, Any]:
    """scan_info of another scan (a sequence's child), through the scan's own data store."""
    return scan._data_store.load_scan(key).info


def blissdata_version() -> str:
    """The installed blissdata's version ('' if unknown): written in each file's root attributes."""
    try:
        from importlib.metadata import version

        return version("blissdata")
    except Exception:
        return ""
