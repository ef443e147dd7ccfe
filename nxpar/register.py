"""`RegisterNexusWriter SESSION`: register a writer device for a BLISS session in the Tango DB:
class NexusWriter (BLISS's "nexus" route) or, with `--class BlissWriter`, BlissWriter ("mapping").

Also `find_session_writer` (how BLISS finds the device, docs/interface.md §2.1) and the Beacon-YAML form of
a registration (`--export-yaml` / `--import-yaml`).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

import tango

from . import logging_setup

log = logging.getLogger("nxpar.register")
CLASS = "NexusWriter"
BLISS_WRITER_CLASS = "BlissWriter"  # BLISS's "mapping" route (nxpar/tango_blisswriter.py)
CLASSES = (CLASS, BLISS_WRITER_CLASS)
DEFAULT_FAMILY = {CLASS: "bliss_nxwriter", BLISS_WRITER_CLASS: "blisswriter"}


def find_session_writer(session: str, beacon_host: str | None = None, db: tango.Database | None = None,
                        writer_class: str = CLASS) -> str | None:
    """The one device of class `writer_class` whose `session` property is `session` (as BLISS does)."""
    db = db or tango.Database()
    beacon_host = beacon_host if beacon_host is not None else os.environ.get("BEACON_HOST")
    found = []
    for name in db.get_device_name("*", writer_class):
        props = db.get_device_property(name, ["session", "beacon_host"])
        if list(props["session"]) != [session]:
            continue
        if beacon_host and props["beacon_host"] and props["beacon_host"][0] != beacon_host:
            continue
        found.append(name)
    if len(found) > 1:
        raise ValueError(f"Found more than one writer for session {session!r}: {found}")
    return found[0] if found else None


def default_domain() -> str:
    return (os.environ.get("BEAMLINE") or os.environ.get("BEAMLINENAME") or "id00").lower()


def register(session: str, server: str = "nexuswriter", instance: str = "", domain: str = "",
             family: str = "", member: str = "", use_existing: bool = True,
             beacon_host: str | None = None, db: tango.Database | None = None,
             writer_class: str = CLASS, extra_props: dict[str, Any] | None = None) -> str:
    """Register (or find) the session's writer of class `writer_class`; returns the device name
    (docs/interface.md §1.3)."""
    if writer_class not in CLASSES:
        raise ValueError(f"writer class must be one of {CLASSES}, got {writer_class!r}")
    db = db or tango.Database()
    instance = instance or session
    domain = (domain or default_domain()).lower()
    family = family or DEFAULT_FAMILY[writer_class]
    member = member or session
    devname = f"{domain}/{family}/{member}"
    if use_existing:
        existing = find_session_writer(session, beacon_host, db, writer_class)
        if existing:
            (log.info if existing.lower() == devname.lower() else log.warning)(
                "session %r already has writer %s", session, existing)
            return existing
    if devname.lower() in (n.lower() for n in db.get_device_name("*", writer_class)):
        log.info("%s already registered", devname)
    else:
        info = tango.DbDevInfo()
        info.name, info._class, info.server = devname, writer_class, f"{server}/{instance}"
        db.add_device(info)
        props: dict[str, Any] = {"session": session, **(extra_props or {})}
        if beacon_host:
            props["beacon_host"] = beacon_host
        db.put_device_property(devname, props)
        log.info("registered %s %s (server %s/%s) for session %r", writer_class, devname, server, instance, session)
    props = db.get_device_property(devname, ["session", "beacon_host"])
    if list(props["session"]) != [session]:
        raise RuntimeError(f"{devname} is listening to Bliss session {list(props['session'])} instead of {session!r}")
    if beacon_host and list(props["beacon_host"]) != [beacon_host]:
        raise RuntimeError(f"{devname} uses Beacon host {list(props['beacon_host'])} instead of {beacon_host!r}")
    return devname


def to_beacon_yaml(server: str, instance: str, devices: dict[str, dict[str, Any]],
                   classes: dict[str, str] | None = None) -> str:
    """The Beacon configuration form of a server's writers (user documentation); `classes`:
    device → Tango class where not NexusWriter (BlissWriter devices)."""
    import yaml

    classes = classes or {}
    doc = {"server": server, "personal_name": instance,
           "device": [{"tango_name": name, "class": classes.get(name, CLASS), "properties": props}
                      for name, props in devices.items()]}
    return yaml.safe_dump(doc, sort_keys=False)


def from_beacon_yaml(text: str, writer_class: str = CLASS) -> tuple[str, str, dict[str, dict[str, Any]]]:
    """(server, instance, {device: properties}) of the devices of class `writer_class`."""
    import yaml

    doc = yaml.safe_load(text)
    devices = {}
    for dev in doc.get("device", []):
        if dev.get("class", CLASS) != writer_class:
            continue
        props = dev.get("properties") or {}
        if "session" not in props:
            raise ValueError(f"{dev.get('tango_name')}: the 'session' property is mandatory")
        devices[dev["tango_name"]] = props
    return doc["server"], doc["personal_name"], devices


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="RegisterNexusWriter", description=__doc__)
    p.add_argument("session", nargs="?", help="BLISS session name")
    p.add_argument("--server", default="nexuswriter", help="Tango server name (default nexuswriter)")
    p.add_argument("--instance", default="", help="Tango server instance (default: the session)")
    p.add_argument("--domain", default="", help="device domain (default: $BEAMLINE, else id00)")
    p.add_argument("--class", dest="writer_class", default=CLASS, choices=CLASSES,
                   help='Tango class: NexusWriter (BLISS SCAN_SAVING.writer = "nexus") or BlissWriter ("mapping")')
    p.add_argument("--family", default="",
                   help="device family (default: bliss_nxwriter for NexusWriter, blisswriter for BlissWriter)")
    p.add_argument("--member", default="", help="device member (default: the session)")
    p.add_argument("--ignore_existing", dest="use_existing", action="store_false",
                   help="register a new device even if the session already has one")
    p.add_argument("--beacon-host", dest="beacon_host", default=None,
                   help="Beacon host the device must listen to (device property beacon_host)")
    p.add_argument("--redis-url", dest="redis_url", default="",
                   help="BlissWriter only: its redis_url property (default: REDIS_DATA_URL or Beacon at start)")
    p.add_argument("--export-yaml", metavar="FILE", help="write the server's registrations as Beacon YAML")
    p.add_argument("--import-yaml", metavar="FILE", help="register the writers of a Beacon YAML file")
    logging_setup.add_cli_args(p)
    args = p.parse_args(argv)
    if args.level == "WARNING":
        args.level = "INFO"
    logging_setup.configure(args)
    if args.import_yaml:
        with open(args.import_yaml) as fh:
            text = fh.read()
        for writer_class in CLASSES:
            server, instance, devices = from_beacon_yaml(text, writer_class)
            server_name, _, server_instance = server.partition("/")
            for name, props in devices.items():
                domain, family, member = name.split("/")
                extra = {k: v for k, v in props.items() if k == "redis_url"} if writer_class == BLISS_WRITER_CLASS \
                    else None
                register(props["session"], server=server_name.lower() if server_name else "nexuswriter",
                         instance=instance, domain=domain, family=family, member=member,
                         use_existing=args.use_existing, beacon_host=props.get("beacon_host"),
                         writer_class=writer_class, extra_props=extra)
        return
    if not args.session:
        p.error("SESSION is required (unless --import-yaml)")
    extra = {"redis_url": args.redis_url} if args.redis_url and args.writer_class == BLISS_WRITER_CLASS else None
    name = register(args.session, args.server, args.instance, args.domain, args.family, args.member,
                    args.use_existing, args.beacon_host, writer_class=args.writer_class, extra_props=extra)
    print(name)
    if args.export_yaml:
        db = tango.Database()
        server = db.get_device_info(name).ds_full_name
        srv, inst = server.split("/")
        devices, classes = {}, {}
        listing = list(db.get_device_class_list(server))
        for dev, cls in zip(listing[::2], listing[1::2]):
            if dev.lower().startswith("dserver/"):
                continue
            props = db.get_device_property(dev, ["session", "beacon_host", "redis_url"])
            devices[dev] = {k: v[0] for k, v in props.items() if v}
            classes[dev] = cls
        with open(args.export_yaml, "w") as fh:
            fh.write(to_beacon_yaml(srv, inst, devices, classes))


if __name__ == "__main__":
    main(sys.argv[1:])
