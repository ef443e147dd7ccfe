"""How BLISS finds its session's writer device (spec §2.10.1), written apart from nxpar's own
`find_session_writer` so that nxpar's registration is what the BLISS tier tests."""
from __future__ import annotations

import os


def find_session_writer(session_name: str, beacon_host: str | None = None,
                        writer_class: str = "NexusWriter") -> str | None:
    """BLISS's "nexus" route asks for class NexusWriter, its "mapping" route for BlissWriter."""
    import tango

    db = tango.Database()
    beacon_host = beacon_host if beacon_host is not None else os.environ.get("BEACON_HOST")
    matches = []
    for name in db.get_device_name("*", writer_class):
        props = db.get_device_property(name, ["session", "beacon_host"])
        if list(props["session"]) != [session_name]:
            continue
        if beacon_host and props["beacon_host"] and props["beacon_host"][0] != beacon_host:
            continue
        matches.append(name)
    if len(matches) > 1:
        raise ValueError(f"Found more than one writer for session {session_name!r}: {matches}")
    return matches[0] if matches else None


def get_uri(proxy) -> str:
    return f"tango://{proxy.get_db_host()}:{proxy.get_db_port()}/{proxy.dev_name()}"
