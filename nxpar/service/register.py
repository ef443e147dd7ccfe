"""`RegisterNexusWriter SESSION`: register a writer device for a BLISS session in the Tango DB:
class NexusWriter (BLISS's "nexus" route) or, with `--class BlissWriter`, BlissWriter ("mapping").

Also `find_session_writer` (how BLISS finds the device, docs/interface.md §2.1) and the Beacon-YAML form of
a server's registrations (`--export-yaml` / `--import-yaml`): each device with its class and every property
the Tango DB holds for it (session, beacon_host, redis_url and the writer options set), so that importing the
export into another Tango DB registers the same devices with the same properties.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

import tango

from . import logging_setup

log = logging.getLogger("nxpar.service.register")
CLASS = "NexusWriter"
BLISS_WRITER_CLASS = "BlissWriter"  # BLISS's "mapping" route (nxpar/service/bliss_writer.py)
CLASSES = (CLASS, BLISS_WRITER_CLASS)
DEFAULT_FAMILY = {CLASS: "bliss_nxwriter", BLISS_WRITER_CLASS: "blisswriter"}
FIRST_PROPERTIES = ("session", "beacon_host", "redis_url")  # how BLISS finds the device: first in the YAML


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


def device_properties(db: tango.Database, device: str) -> dict[str, str | list[str]]:
    """Every property the Tango DB holds for `device` (those its class declares and any other an
    operator set), as stored: a string, or a list of strings for a multi-valued property."""
    first = {name: i for i, name in enumerate(FIRST_PROPERTIES)}
    names = sorted(db.get_device_property_list(device, "*"), key=lambda n: (first.get(n, len(first)), n))
    values = db.get_device_property(device, names) if names else {}
    return {name: (list(v)[0] if len(v) == 1 else list(v)) for name in names if len(v := values[name])}


def _yaml_value(stored: str | list[str]) -> Any:
    """A DB string as the YAML scalar an operator would write (true, 16.0, 3) where importing that scalar
    stores the very same string again (str(value), as PyTango does); else the string itself."""
    if isinstance(stored, list):
        return [_yaml_value(v) for v in stored]
    if stored in ("True", "False"):
        return stored == "True"
    for kind in (int, float):
        try:
            value = kind(stored)
        except ValueError:
            continue
        if str(value) == stored:
            return value
    return stored


def to_beacon_yaml(server: str, instance: str, devices: dict[str, dict[str, Any]],
                   classes: dict[str, str] | None = None) -> str:
    """The Beacon configuration form of a server's writers (user documentation); `classes`:
    device → Tango class where not NexusWriter (BlissWriter devices). Property values read from the DB
    (strings) are written as YAML scalars that import back to the same strings."""
    import yaml

    classes = classes or {}
    doc = {"server": server, "personal_name": instance,
           "device": [{"tango_name": name, "class": classes.get(name, CLASS),
                       "properties": {k: _yaml_value(v) if isinstance(v, (str, list)) else v for k, v in props.items()}}
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


def export_server(db: tango.Database, device: str) -> str:
    """The Beacon YAML of the server serving `device`: each of its devices with its class and every
    property the DB holds for it."""
    server = db.get_device_info(device).ds_full_name
    srv, inst = server.split("/")
    devices, classes = {}, {}
    listing = list(db.get_device_class_list(server))
    for dev, cls in zip(listing[::2], listing[1::2]):
        if dev.lower().startswith("dserver/"):
            continue
        devices[dev] = device_properties(db, dev)
        classes[dev] = cls
    return to_beacon_yaml(srv, inst, devices, classes)


def import_beacon_yaml(text: str, use_existing: bool = True, db: tango.Database | None = None) -> list[str]:
    """Register the writers of a Beacon YAML (both classes), each with every property the file gives it;
    a device already registered under that name gets the file's properties. A session that already has a
    writer of that class under another name keeps it, untouched (unless not `use_existing`).
    Returns the devices registered or found."""
    db = db or tango.Database()
    names = []
    for writer_class in CLASSES:
        server, instance, devices = from_beacon_yaml(text, writer_class)
        server_name = server.partition("/")[0].lower() or "nexuswriter"
        for name, props in devices.items():
            props = {k: v for k, v in props.items() if v is not None}  # `key:` left empty: no property
            domain, family, member = name.split("/")
            found = register(str(props["session"]), server=server_name, instance=str(instance), domain=domain,
                             family=family, member=member, use_existing=use_existing,
                             beacon_host=props.get("beacon_host"), db=db, writer_class=writer_class,
                             extra_props=props)
            if found.lower() == name.lower():
                db.put_device_property(found, props)
            names.append(found)
    return names


def _parser() -> argparse.ArgumentParser:
    """The command line of `RegisterNexusWriter`."""
    p = argparse.ArgumentParser(prog="RegisterNexusWriter", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("session", nargs="?", help="BLISS session name")
    p.add_argument("--server", default="nexuswriter", help="Tango server name (default nexuswriter)")
    p.add_argument("--instance", default="", help="Tango server instance (default: the session)")
    p.add_argument("--domain", default="", help="device domain (default: $BEAMLINE, else id00)")
    p.add_argument("--class", dest="writer_class", default=CLASS, choices=CLASSES,
                   help='Tango class: NexusWriter (BLISS SCAN_SAVING.writer = "nexus") or BlissWriter ("mapping")')
    p.add_argument("--family", default="",
                   help="device family (default: bliss_nxwriter for NexusWriter, blisswriter for BlissWriter)")
    p.add_argument("--member", default="", help="device member (default: the session)")
    p.add_argument("--ignore-existing", "--ignore_existing", dest="use_existing", action="store_false",
                   help="register a new device even if the session already has one")
    p.add_argument("--beacon-host", dest="beacon_host", default=None,
                   help="Beacon host the device must listen to (device property beacon_host)")
    p.add_argument("--redis-url", dest="redis_url", default="",
                   help="BlissWriter only: its redis_url property (default: REDIS_DATA_URL or Beacon at start)")
    p.add_argument("--export-yaml", metavar="FILE",
                   help="after registering, write the server's devices as Beacon YAML: each with its class and "
                        "every device property in the Tango DB (writer options included)")
    p.add_argument("--import-yaml", metavar="FILE",
                   help="register the writers of a Beacon YAML file (both classes), each with all its properties")
    logging_setup.add_cli_args(p)
    return p


def main(argv: list[str] | None = None) -> None:
    """Exit status 0; 1 with one line saying why (no Tango database, a registration that conflicts, a file)."""
    p = _parser()
    args = p.parse_args(argv)
    logging_setup.configure(args)
    if not args.session and not args.import_yaml:
        p.error("SESSION is required (unless --import-yaml)")
    try:
        for name in _register_from_args(args):
            print(name)
    except tango.DevFailed as e:
        where = os.environ.get("TANGO_HOST", "")
        p.exit(1, f"{p.prog}: cannot use the Tango database{' at ' + where if where else ''}: "
                  f"{logging_setup.one_line(e)}\n")
    except Exception as e:  # files, YAML, conflicting registrations: one line (the traceback at DEBUG)
        log.debug("%s failed", p.prog, exc_info=True)
        p.exit(1, f"{p.prog}: {logging_setup.one_line(e)}\n")


def _register_from_args(args: argparse.Namespace) -> list[str]:
    """The devices registered (or found): from --import-yaml, else the session's; --export-yaml after."""
    if args.import_yaml:
        with open(args.import_yaml) as fh:
            return import_beacon_yaml(fh.read(), args.use_existing)
    extra = {"redis_url": args.redis_url} if args.redis_url and args.writer_class == BLISS_WRITER_CLASS else None
    name = register(args.session, args.server, args.instance, args.domain, args.family, args.member,
                    args.use_existing, args.beacon_host, writer_class=args.writer_class, extra_props=extra)
    if args.export_yaml:
        with open(args.export_yaml, "w") as fh:
            fh.write(export_server(tango.Database(), name))
    return [name]


if __name__ == "__main__":
    main(sys.argv[1:])
