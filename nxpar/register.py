"""`RegisterNexusWriter SESSION`: register a NexusWriter device for a BLISS session in the Tango DB.

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


def find_session_writer(session: str, beacon_host: str | None = None, db: tango.Database | None = None) -> str | None:
    """The one device of class NexusWriter whose `session` property is `session` (as BLISS does)."""
    db = db or tango.Database()
    beacon_host = beacon_host if beacon_host is not None else os.environ.get("BEACON_HOST")
    found = []
    for name in db.get_device_name("*", CLASS):
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
             family: str = "bliss_nxwriter", member: str = "", use_existing: bool = True,
             beacon_host: str | None = None, db: tango.Database | None = None) -> str:
    """Register (or find) the session's writer; returns the device name (docs/interface.md §1.3)."""
    db = db or tango.Database()
    instance = instance or session
    domain = (domain or default_domain()).lower()
    family = family or "bliss_nxwriter"
    member = member or session
    devname = f"{domain}/{family}/{member}"
    if use_existing:
        existing = find_session_writer(session, beacon_host, db)
        if existing:
            (log.info if existing.lower() == devname.lower() else log.warning)(
                "session %r already has writer %s", session, existing)
            return existing
    if devname.lower() in (n.lower() for n in db.get_device_name("*", CLASS)):
        log.info("%s already registered", devname)
    else:
        info = tango.DbDevInfo()
        info.name, info._class, info.server = devname, CLASS, f"{server}/{instance}"
        db.add_device(info)
        props: dict[str, Any] = {"session": session}
        if beacon_host:
            props["beacon_host"] = beacon_host
        db.put_device_property(devname, props)
        log.info("registered %s (server %s/%s) for session %r", devname, server, instance, session)
    props = db.get_device_property(devname, ["session", "beacon_host"])
    if list(props["session"]) != [session]:
        raise RuntimeError(f"{devname} is listening to Bliss session {list(props['session'])} instead of {session!r}")
    if beacon_host and list(props["beacon_host"]) != [beacon_host]:
        raise RuntimeError(f"{devname} uses Beacon host {list(props['beacon_host'])} instead of {beacon_host!r}")
    return devname


def to_beacon_yaml(server: str, instance: str, devices: dict[str, dict[str, Any]]) -> str:
    """The Beacon configuration form of a server's writers (user documentation)."""
    import yaml

    doc = {"server": server, "personal_name": instance,
           "device": [{"tango_name": name, "class": CLASS, "properties": props} for name, props in devices.items()]}
    return yaml.safe_dump(doc, sort_keys=False)


def from_beacon_yaml(text: str) -> tuple[str, str, dict[str, dict[str, Any]]]:
    import yaml

    doc = yaml.safe_load(text)
    devices = {}
    for dev in doc.get("device", []):
        if dev.get("class", CLASS) != CLASS:
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
    p.add_argument("--family", default="bliss_nxwriter", help="device family (default bliss_nxwriter)")
    p.add_argument("--member", default="", help="device member (default: the session)")
    p.add_argument("--ignore_existing", dest="use_existing", action="store_false",
                   help="register a new device even if the session already has one")
    p.add_argument("--beacon-host", dest="beacon_host", default=None,
                   help="Beacon host the device must listen to (device property beacon_host)")
    p.add_argument("--export-yaml", metavar="FILE", help="write the server's registrations as Beacon YAML")
    p.add_argument("--import-yaml", metavar="FILE", help="register the writers of a Beacon YAML file")
    logging_setup.add_cli_args(p)
    args = p.parse_args(argv)
    if args.level == "WARNING":
        args.level = "INFO"
    logging_setup.configure(args)
    if args.import_yaml:
        with open(args.import_yaml) as fh:
            server, instance, devices = from_beacon_yaml(fh.read())
        server_name, _, server_instance = server.partition("/")
        for name, props in devices.items():
            domain, family, member = name.split("/")
            register(props["session"], server=server_name.lower() if server_name else "nexuswriter",
                     instance=instance, domain=domain, family=family, member=member,
                     use_existing=args.use_existing, beacon_host=props.get("beacon_host"))
        return
    if not args.session:
        p.error("SESSION is required (unless --import-yaml)")
    name = register(args.session, args.server, args.instance, args.domain, args.family, args.member,
                    args.use_existing, args.beacon_host)
    print(name)
    if args.export_yaml:
        db = tango.Database()
        server = db.get_device_info(name).ds_full_name
        srv, inst = server.split("/")
        devices = {}
        for dev in db.get_device_class_list(server)[::2]:
            if dev.lower().startswith("dserver/"):
                continue
            props = db.get_device_property(dev, ["session", "beacon_host"])
            devices[dev] = {k: v[0] for k, v in props.items() if v}
        with open(args.export_yaml, "w") as fh:
            fh.write(to_beacon_yaml(srv, inst, devices))


if __name__ == "__main__":
    main(sys.argv[1:])
