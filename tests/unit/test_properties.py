"""The property table (nxpar/service/properties.py) and the command lines' shape: every property of both
Tango classes has one row (type, default, range); bad values are refused naming the property and the range,
never clamped; the CLIs' options have one style, help texts and true defaults. The devices themselves, with a
real Tango database: tests/test_operating.py."""
from __future__ import annotations

import argparse

import pytest
from tango.server import device_property

from nxpar.protocol.options import Tuning
from nxpar.service import batch, main, register
from nxpar.service.bliss_writer import BlissWriter
from nxpar.service.nexus_writer import NexusWriter
from nxpar.service.properties import BY_NAME, PROPERTIES, BadValue, Kind, PropertySpec, of_class, option_type


@pytest.mark.parametrize("cls", [NexusWriter, BlissWriter])
def test_every_property_of_both_classes_is_a_row_of_the_table(cls):
    declared = {k: v for k, v in vars(cls).items() if isinstance(v, device_property)}
    assert set(declared) - {"session"} == {p.name for p in of_class(cls.__name__)}
    for name, prop in declared.items():
        if name != "session":
            assert prop.default_value == BY_NAME[name].default and prop.doc == BY_NAME[name].doc
    assert declared["session"].mandatory is (cls is NexusWriter)


def test_every_row_has_a_doc_and_its_default_is_accepted():
    for p in PROPERTIES:
        assert p.doc and p.classes
        if p.kind is Kind.TEXTS:
            assert p.parse(list(p.default)) == list(p.default)
        else:
            assert p.parse([str(p.default)]) == p.default
        assert p.parse([]) == p.default  # not set in the database


@pytest.mark.parametrize("name, raw, words", [
    ("flush_period", ["abc"], "property flush_period = 'abc' is not accepted: a number of seconds from 0.05 to 3600"),
    ("flush_period", ["0,5"], "a number of seconds from 0.05 to 3600 expected (default 0.5)"),
    ("flush_period", ["-1"], "from 0.05 to 3600"),
    ("flush_period", ["0.01"], "from 0.05 to 3600"),
    ("flush_period", ["nan"], "from 0.05 to 3600"),
    ("flush_period", ["0.5", "1"], "one value, not several lines"),
    ("step_mb_per_writer", ["0"], "property step_mb_per_writer = '0' is not accepted: a number of MB from 0.0625 to 4096"),
    ("max_write_delay", ["-0.1"], "a number of seconds from 0 to 3600"),
    ("stale_scan_timeout", ["-5"], "a number of seconds ≥ 0"),
    ("required_disk_space", ["inf"], "a number of MB ≥ 0"),
    ("keepshape", ["maybe"], "property keepshape = 'maybe' is not accepted: true or false expected (default False)"),
    ("redis_url", ["localhost:6379"], "a redis://, rediss:// or unix:// URL, or nothing expected"),
])
def test_a_bad_value_is_refused_naming_the_property_and_what_it_accepts(name, raw, words):
    with pytest.raises(BadValue) as refused:
        BY_NAME[name].parse(raw)
    assert words in str(refused.value)


@pytest.mark.parametrize("name, raw, value", [
    ("flush_period", ["0.05"], 0.05), ("flush_period", ["3600"], 3600.0), ("step_mb_per_writer", ["0.0625"], 0.0625),
    ("stale_scan_timeout", ["0"], 0.0), ("required_disk_space", ["1e12"], 1e12), ("keepshape", ["True"], True),
    ("keepshape", ["1"], True), ("copy_non_external", ["false"], False), ("redis_url", ["redis://h:1"], "redis://h:1"),
])
def test_values_in_range_are_taken_as_they_are(name, raw, value):
    assert BY_NAME[name].parse(raw) == value


def test_a_list_property_takes_one_value_per_line():
    """Kind.TEXTS (a DevVarStringArray property, e.g. a list of directories): one row is all it takes."""
    roots = PropertySpec("roots", Kind.TEXTS, [], "directories", check=lambda v: all(d.startswith("/") for d in v),
                         expects="absolute directories, one per line")
    assert roots.parse(["/data/visitor", " ", "/data/id00 "]) == ["/data/visitor", "/data/id00"]
    assert roots.parse([]) == []
    with pytest.raises(BadValue, match="property roots = \\['/data', 'tmp'\\] is not accepted: absolute directories"):
        roots.parse(["/data", "tmp"])
    assert roots.declare().dtype is not None and roots.declare().default_value == []


def test_tuning_takes_the_values_as_they_are_never_clamped():
    tuning = Tuning.from_properties(0.05, 0.0625, 0.0, 0.0)
    assert (tuning.flush_period_s, tuning.step_bytes_per_writer, tuning.max_delay_s) == (0.05, 64 << 10, 0.0)
    assert Tuning.from_properties(2, 32, 1, 10).describe() == (
        "steps of 32768 KiB per writer rank (at least 1024 KiB or 1 s), flush every 2 s")


def test_batch_options_are_checked_against_the_same_rows():
    assert option_type("flush_period")("2") == 2.0
    with pytest.raises(argparse.ArgumentTypeError, match="'-1': a number of seconds from 0.05 to 3600 expected"):
        option_type("flush_period")("-1")
    args = batch.parse_args(["redis://h:1"])
    assert (args.flush_period, args.step_mb_per_writer, args.level) == (0.5, 16.0, "INFO")


def parsers() -> dict[str, argparse.ArgumentParser]:
    return {"NexusWriterService": main.build_parser(), "NexusWriterBatch": batch.build_parser(),
            "RegisterNexusWriter": register._parser()}


# blisswriter's spellings (docs/interface.md §1): kept as aliases of the dashed options
BLISSWRITER_SPELLINGS = {"--log_tango", "--ignore_existing", "--logfile", "--filesize", "--filebackups",
                         "--nologstdout"}


@pytest.mark.parametrize("prog", ["NexusWriterService", "NexusWriterBatch", "RegisterNexusWriter"])
def test_options_have_one_style_help_texts_and_true_defaults(prog):
    parser = parsers()[prog]
    for action in parser._actions:
        if not action.option_strings or action.dest == "help":
            continue
        assert action.help, (prog, action.option_strings)
        primary, *aliases = [o for o in action.option_strings if o.startswith("--")]
        assert "_" not in primary, (prog, primary)
        assert set(aliases) <= BLISSWRITER_SPELLINGS, (prog, aliases)
        if "default" in action.help and action.default not in (None, False, True, "", []):
            shown = f"{action.default:g}" if isinstance(action.default, float) else str(action.default)
            assert f"default {shown}" in action.help, (prog, action.option_strings, action.help)
    level = next(a for a in parser._actions if a.dest == "level")
    assert level.default == "INFO" and "(default INFO" in level.help


def test_blisswriters_spellings_still_work():
    args = main.parse_args(["inst", "--log_tango", "debug", "--logfile", "/tmp/x.log", "--nologstdout"])
    assert (args.log_tango, args.logfile, args.logstdout, args.level) == ("DEBUG", "/tmp/x.log", False, "INFO")
    assert main.parse_args(["inst", "--log-tango", "info", "--log", "warning"]).log_tango == "INFO"
    assert register._parser().parse_args(["s", "--ignore_existing"]).use_existing is False
    assert register._parser().parse_args(["s", "--ignore-existing"]).use_existing is False
