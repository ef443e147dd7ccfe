"""The allowed roots, the checking itself (nxpar/util/paths.py, nxpar/driver/path_checks.py): real
directories and symlinks under tmp_path, real plans from the test publisher's scan_info. What a scan,
a detector and `makedirs` do with it on the real stack: tests/test_allowed_roots.py."""
from __future__ import annotations

import logging
import os

import pytest

from launch.simulate import ScanSpec, scan_info
from nxpar.driver.path_checks import DetectorFiles, checked_scan_file, node_files, nodes_inside, policy_of
from nxpar.nexus.plan import ScanPlan
from nxpar.protocol.options import SaveOptions
from nxpar.protocol.steps import Node, NodeOp
from nxpar.service.batch import parse_args, save_options
from nxpar.util.paths import SYSTEM_DIRS, PathPolicy, PathRefused, policy_for, split_roots


@pytest.fixture
def tree(tmp_path):
    """allowed/ (with a symlink to outside/ and one to allowed/sub/), outside/."""
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    (allowed / "sub").mkdir(parents=True)
    outside.mkdir()
    (allowed / "escape").symlink_to(outside)
    (allowed / "inner").symlink_to(allowed / "sub")
    (allowed / "secret.h5").symlink_to(outside / "secret.h5")
    return allowed, outside


def test_a_path_is_allowed_when_its_real_path_is_below_a_root(tree):
    allowed, outside = tree
    policy = PathPolicy((str(allowed),))
    assert policy.refusal(str(allowed)) == ""
    assert policy.refusal(str(allowed / "sub" / "x.h5")) == ""
    assert policy.refusal(str(allowed / "new" / "dirs" / "x.h5"), created=True) == ""  # not made yet
    assert policy.refusal(str(allowed / "inner" / "x.h5")) == ""  # a symlink that stays inside
    reason = policy.refusal(str(outside / "x.h5"))
    assert reason == f"{outside / 'x.h5'} is outside the allowed roots ({allowed})"
    assert policy.refusal(str(allowed) + "2/x.h5")  # a sibling whose name starts like the root
    assert policy.refusal("/etc/passwd") and policy.refusal("/")


def test_symlinks_are_resolved_existing_or_not(tree):
    allowed, outside = tree
    policy = PathPolicy((str(allowed),))
    reason = policy.refusal(str(allowed / "escape" / "new" / "x.h5"), created=True)  # its parent resolves outside
    assert reason == (f"{allowed / 'escape' / 'new' / 'x.h5'} (real path {outside / 'new' / 'x.h5'}) is outside "
                      f"the allowed roots ({allowed})")
    assert "real path" in policy.refusal(str(allowed / "secret.h5"))  # a dangling symlink to outside
    with pytest.raises(PathRefused, match=r"^scan file: .* is outside the allowed roots"):
        policy.check(str(allowed / "escape" / "x.h5"), "scan file")


def test_a_root_that_is_a_symlink_allows_what_it_points_to(tree, tmp_path):
    allowed, _ = tree
    (tmp_path / "data").symlink_to(allowed)
    policy = PathPolicy((str(tmp_path / "data"),))
    assert policy.refusal(str(allowed / "sub" / "x.h5")) == "" and policy.refusal(str(tmp_path / "data" / "x")) == ""


def test_what_the_service_creates_makes_no_directory_outside(tree):
    allowed, outside = tree
    policy = PathPolicy((str(allowed),))
    assert policy.refusal(f"{allowed}/new/../sub/x.h5", created=True) == ""  # makes allowed/new: inside
    assert policy.refusal(f"{allowed}/../{allowed.name}/sub/x.h5", created=True) == ""  # makes nothing
    detour = f"{allowed}/../made_outside/../{allowed.name}/x.h5"
    assert policy.refusal(detour) == ""  # read: resolves inside
    assert policy.refusal(detour, created=True) == (  # makedirs would make made_outside/ on the way
        f"{detour} would make the directory {allowed.parent / 'made_outside'}, outside the allowed roots ({allowed})")
    assert "is outside" in policy.refusal(f"{allowed}/../outside/x.h5")
    assert policy.refusal("relative/x.h5") == "relative/x.h5 is not an absolute path"
    assert policy.refusal("") == "'' is not a path" and policy.refusal(None) == "None is not a path"
    assert "cannot be resolved" in policy.refusal(f"{allowed}/a\0b")


def test_unset_roots_refuse_the_system_directories_only():
    policy = PathPolicy()
    assert policy.unset and "allowed_roots is unset" in policy.describe()
    for path in ("/etc/nxpar_probe_master.h5", "/usr/lib/x.h5", "/proc/1/x", "/root/x.h5", "/var/lib/x"):
        assert "is in the system directory" in policy.refusal(path), path
    assert policy.refusal("/etc/x/../../tmp/x.h5") == ""  # read only: resolves to /tmp
    for path in ("/tmp/x.h5", "/data/visitor/x.h5", "/var/tmp/x.h5", "/home/opid00/x.h5"):
        assert policy.refusal(path) == "", path
    assert "/etc" in SYSTEM_DIRS and "/tmp" not in SYSTEM_DIRS


def test_every_root_counts_and_none_means_nothing(tree, tmp_path):
    allowed, outside = tree
    assert PathPolicy((str(outside), str(allowed))).refusal(str(outside / "x")) == ""
    assert PathPolicy(("/",)).refusal("/etc/passwd") == ""  # the operator's explicit choice
    nothing = PathPolicy(())
    assert "none (allowed_roots holds no absolute directory)" in nothing.refusal(str(allowed / "x"))


def test_roots_from_a_property_or_an_option():
    assert split_roots(["/data/visitor", " /data/id00/inhouse/ ", ""]) == (["/data/visitor", "/data/id00/inhouse"], [])
    assert split_roots("/a:/b,/c\n/d") == (["/a", "/b", "/c", "/d"], [])
    assert split_roots(["/a", "data"]) == (["/a"], ["data"])
    assert split_roots(None) == ([], [])


def test_the_policy_is_said_in_the_log(caplog):
    with caplog.at_level(logging.INFO, logger="nxpar.paths"):
        assert policy_for("id00/bliss_nxwriter/s", []) == PathPolicy()
        assert policy_for("dev", ["/data/visitor", "/data/id00"]) == PathPolicy(("/data/visitor", "/data/id00"))
        assert policy_for("dev", ["/data/visitor", "data/id00"]) == PathPolicy(("/data/visitor",))
        assert policy_for("dev", ["data"]) == PathPolicy(())  # never wider than asked: nothing
    levels = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert levels[0][0] == "WARNING" and "id00/bliss_nxwriter/s: allowed_roots is unset" in levels[0][1]
    assert levels[1] == ("INFO", "dev: allowed roots: /data/visitor, /data/id00")
    assert levels[2] == ("ERROR", "dev: allowed_roots entries that are not absolute directories are ignored: 'data/id00'")
    assert levels[-1][0] == "WARNING" and "none" in levels[-1][1]


def test_the_batch_option_makes_the_same_policy(tmp_path):
    args = parse_args(["redis://h:1", "--allowed-roots", "/data/visitor:/data/id00", "--allowed-roots", "/tmp/x"])
    assert save_options(args).paths == PathPolicy(("/data/visitor", "/data/id00", "/tmp/x"))
    assert save_options(parse_args(["redis://h:1"])).paths == PathPolicy()
    with pytest.raises(SystemExit):
        parse_args(["redis://h:1", "--allowed-roots", "data"])


def plan(tmp_path, **info) -> ScanPlan:
    base = scan_info(ScanSpec("s", str(tmp_path / "allowed" / "scan.h5"), 1, 3, image_shape=None, mca_channels=None))
    return ScanPlan({**base, **info}, SaveOptions())


def test_the_plan_is_checked_before_anything_is_made(tree, tmp_path):
    allowed, outside = tree
    policy = PathPolicy((str(allowed),))
    assert checked_scan_file(plan(tmp_path), policy) == str(allowed / "scan.h5")
    with pytest.raises(PathRefused, match=f"^scan file: {outside}/scan.h5 is outside"):
        checked_scan_file(plan(tmp_path, filename=str(outside / "scan.h5")), policy)
    masters = {"instrument_info": {}, "devices": {}, "masterfiles": {"dataset": str(outside / "m.h5")}}
    with pytest.raises(PathRefused, match=f"^master file: {outside}/m.h5 is outside"):
        checked_scan_file(plan(tmp_path, nexuswriter=masters), policy)
    separate = {"writer_options": {"separate_scan_files": True}, "images_path": str(outside / "{scan_name}" / "x")}
    with pytest.raises(PathRefused, match=rf"^scan file: {allowed}/\.\./outside/bliss_master.h5 \(real path {outside}"
                       r"/bliss_master.h5\) is outside"):
        checked_scan_file(plan(tmp_path, **separate), policy)
    assert not list(outside.iterdir())


def test_the_files_nodes_link_are_named_absolute(tmp_path):
    nodes = [Node(NodeOp.EXTLINK, "/a", target="/x", target_file="lima2.h5"),
             Node(NodeOp.VDS, "/b", {"sources": [("scan0001/f_0000.h5", "/d", (1,), 0, 0, 1),
                                                 ("/abs/f.h5", "/d", (1,), 0, 1, 1)]}),
             Node(NodeOp.VDS_MAP, "/c", {"sources": [(".", "/b", {}, {})]}),
             Node(NodeOp.EXTERNAL, "/e", {"files": [("/edf/f.edf", 1024, 16)]}),
             Node(NodeOp.VALUE, "/v", "not a file")]
    assert node_files(nodes, "/data/s/scan.h5") == ["/data/s/lima2.h5", "/data/s/scan0001/f_0000.h5", "/abs/f.h5",
                                                    "/edf/f.edf"]


def test_detector_files_are_checked_once_they_exist(tree):
    allowed, outside = tree
    files = DetectorFiles(PathPolicy((str(allowed),)))
    later = allowed / "sub" / "f_0001.h5"
    assert files.refusal([str(allowed / "sub" / "f_0000.h5"), str(later)]) == ""
    later.symlink_to(outside / "f.h5")  # appeared after the first look, as a symlink: looked at again
    assert "is outside the allowed roots" in files.refusal([str(later)])
    assert policy_of(None) == PathPolicy() and policy_of(plan(allowed.parent)) == SaveOptions().paths
    assert os.path.islink(later)


def test_nodes_made_after_the_file_exists_are_left_out_when_they_link_outside(tree):
    allowed, outside = tree
    nodes = [Node(NodeOp.EXTLINK, "/1.1/inside", target="/x", target_file="lima2.h5"),
             Node(NodeOp.EXTLINK, "/1.1/up", target="/x", target_file=str(outside / "f.h5")),
             Node(NodeOp.VALUE, "/1.1/end_reason", "SUCCESS")]
    kept, refused = nodes_inside(nodes, str(allowed / "scan.h5"), PathPolicy((str(allowed),)))
    assert [n.path for n in kept] == ["/1.1/inside", "/1.1/end_reason"]
    assert refused == [f"/1.1/up not written: {outside / 'f.h5'} is outside the allowed roots ({allowed})"]
