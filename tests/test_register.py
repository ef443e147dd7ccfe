"""RegisterNexusWriter's Beacon YAML (issue 16 follow-up): export → import into a fresh, real Tango DB
registers the same devices (class, name, server) with the same properties, the writer options an
operator set included."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import tango
import yaml

from launch.stack import Stack
from nxpar.service.register import (
    BLISS_WRITER_CLASS,
    CLASS,
    device_properties,
    find_session_writer,
    from_beacon_yaml,
    to_beacon_yaml,
)
from tests.helpers import ROOT

SESSION = "regexport"
INSTANCE = "w_regexport"
# as an operator sets them (Jive, put_device_property): the DB keeps strings, spelled as they were given
NEXUS_PROPS = {"keepshape": "True", "disable_external_hdf5": "true", "copy_non_external": "1", "mosca_vds": "True",
               "noconfig": "False", "multivalue_positioners": "true", "enable_external_nonhdf5": "True",
               "required_disk_space": "50.5", "recommended_disk_space": "2048", "purge_delay": "60",
               "flush_period": "0.50", "step_mb_per_writer": "8.0", "max_write_delay": "0.25",
               "beacon_host": "beacon1:25000", "operator_note": ["two lines", "3"]}
BLISS_PROPS = {"disable_external_hdf5": "True", "copy_non_external": "True", "mosca_vds": "true",
               "required_disk_space": "100", "recommended_disk_space": "1e3", "flush_period": "1",
               "step_mb_per_writer": "32.0", "max_write_delay": "0"}


def register_cli(*args: str, env: dict[str, str] | None = None) -> list[str]:
    """RegisterNexusWriter as an operator runs it; the device names it prints (between its log lines)."""
    out = subprocess.run([sys.executable, "-m", "nxpar.service.register", *args], check=True, capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})
    return [line for line in out.stdout.splitlines() if re.fullmatch(r"[\w.-]+/[\w.-]+/[\w.-]+", line)]


def registration(db: tango.Database, device: str) -> tuple[str, str, dict]:
    info = db.get_device_info(device)
    return info.class_name, info.ds_full_name, device_properties(db, device)


@pytest.fixture
def fresh_db(tmp_path):
    """A second, empty Tango DB (its own process, stopped by PID at the end)."""
    fresh = Stack(tmp_path / "fresh_tango")
    try:
        host = fresh.start_tango_db()
        name, port = host.split(":")
        yield host, tango.Database(name, int(port))
    finally:
        fresh.down()


def test_export_import_reproduces_both_classes_with_their_properties(stack, tmp_path, fresh_db):
    db = tango.Database()
    [nexus] = register_cli(SESSION, "--instance", INSTANCE, "--domain", "id00", "--beacon-host", "beacon1:25000")
    db.put_device_property(nexus, NEXUS_PROPS)
    [bliss] = register_cli(SESSION, "--class", "BlissWriter", "--instance", INSTANCE, "--domain", "id00",
                           "--redis-url", stack.env["REDIS_DATA_URL"])
    db.put_device_property(bliss, BLISS_PROPS)
    yml = tmp_path / "writers.yml"
    assert register_cli(SESSION, "--instance", INSTANCE, "--domain", "id00", "--export-yaml", str(yml)) == [nexus]
    # readable where that is exact: what an operator writes in Beacon YAML
    doc = yaml.safe_load(yml.read_text())
    props = {d["tango_name"]: d["properties"] for d in doc["device"]}
    assert props[nexus]["mosca_vds"] is True and props[nexus]["step_mb_per_writer"] == 8.0
    assert props[nexus]["flush_period"] == "0.50" and props[nexus]["disable_external_hdf5"] == "true"
    assert props[bliss]["redis_url"] == stack.env["REDIS_DATA_URL"] and props[bliss]["copy_non_external"] is True

    host, fresh = fresh_db
    assert list(fresh.get_device_name("*", CLASS)) == []
    assert register_cli("--import-yaml", str(yml), env={"TANGO_HOST": host}) == [nexus, bliss]
    for device, expected_class in ((nexus, CLASS), (bliss, BLISS_WRITER_CLASS)):
        exported = registration(db, device)
        assert exported[0] == expected_class
        assert registration(fresh, device) == exported  # class, server, every property, as strings
    assert device_properties(fresh, nexus)["operator_note"] == ["two lines", "3"]
    assert find_session_writer(SESSION, "beacon1:25000", fresh) == nexus
    assert find_session_writer(SESSION, db=fresh, writer_class=BLISS_WRITER_CLASS) == bliss

    # importing again an edited file updates the devices it names
    yml.write_text(yml.read_text().replace("step_mb_per_writer: 32.0", "step_mb_per_writer: 4"))
    assert register_cli("--import-yaml", str(yml), env={"TANGO_HOST": host}) == [nexus, bliss]
    assert device_properties(fresh, bliss)["step_mb_per_writer"] == "4"
    assert registration(fresh, nexus) == registration(db, nexus)


@pytest.mark.parametrize("stored", ["True", "true", "1", "0.50", "8.0", "1e3", "-0", "0x10", "nan", "null", "yes",
                                    "12:30", "beacon1:25000", "", " 5", "redis://h:6379/0", ["a", "2", "True"]])
def test_yaml_values_import_back_to_the_stored_strings(stored):
    """Each DB string goes through YAML and back to the string PyTango stores (str of each value)."""
    text = to_beacon_yaml("nexuswriter", "w", {"id00/bliss_nxwriter/s": {"session": "s", "p": stored}})
    value = from_beacon_yaml(text)[2]["id00/bliss_nxwriter/s"]["p"]
    assert ([str(v) for v in value] if isinstance(value, list) else str(value)) == stored
