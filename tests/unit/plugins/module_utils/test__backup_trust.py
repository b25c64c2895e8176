# -*- coding: utf-8 -*-
# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A restore trusts nothing in a backup folder beyond its manifest (trust_problems in _backup.py).

Each test crafts a real backup on disk (written by create_backup from a store MLflow served), checks
that it passes as written (the control), changes one thing, and checks the refusal: by the check
(state=checked), by the swap before it copies anything, and by the load into PostgreSQL/S3. The
tests run as root, as the modules do on a server."""

from __future__ import annotations

import json
import os
import socket
import stat

import pytest
from ansible_collections.mlops.mlflow.plugins.module_utils import _backup, _store_read, _swap
from ansible_collections.mlops.mlflow.tests.unit.plugins.module_utils.store_cases import StandIn, _now

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="ownership checks need root, as on a server")
MEMBER_UID = 1000


def snapshot(root):
    found = {}
    for directory, _subdirs, names in os.walk(root):
        for name in names:
            path = os.path.join(directory, name)
            found[os.path.relpath(path, root)] = None if os.path.islink(path) else open(path, "rb").read()
    return found


@pytest.fixture
def backup(served, tmp_path):
    """A backup as mlflow_backup writes it, checked to pass before each test changes it."""
    path = _backup.create_backup(str(served), str(tmp_path / "backups"), "manual", now=_now(0))["path"]
    assert _backup.trust_problems(path) == []
    assert _backup.verify_backup(path)["ok"]
    return path


@pytest.fixture
def artifacts(backup):
    """The folder of the backup's first artifact files."""
    for directory, _subdirs, names in os.walk(os.path.join(backup, "mlruns")):
        if "model.bin" in names:
            return directory
    raise AssertionError("the backup holds no model.bin")


@pytest.fixture
def secrets(served):
    """A secrets folder beside the store's data, as on a server (<store>/secrets)."""
    path = served / "secrets"
    path.mkdir(mode=0o700)
    (path / "basic_auth.ini").write_text("[mlflow]\nadmin_password = not-for-members\n")
    return path


def refused(backup, served, expected):
    """The refusal in every path that reads the backup: the check, the swap (store untouched), the load."""
    problems = _backup.trust_problems(backup)
    assert any(expected in problem for problem in problems), problems
    checked = _backup.verify_backup(backup)
    assert not checked["ok"] and any(expected in problem for problem in checked["problems"]), checked["problems"]
    before = snapshot(served)
    with pytest.raises(_store_read.StoreError, match="cannot be trusted") as error:
        _swap.swap_in(str(served), backup, now=_now(60))
    assert expected in str(error.value) and str(error.value).endswith("Nothing was changed.")
    assert snapshot(served) == before
    assert not [name for name in os.listdir(served) if name.startswith((".restore-", "kept-before-"))]
    empty = StandIn(facts="tables=0\n")
    with pytest.raises(_store_read.StoreError, match="cannot be trusted"):
        _swap.load_backup(backup, db=empty)
    assert empty.loaded is None
    return problems


def test_a_clean_backup_is_trusted_and_restored(backup, served):
    result = _swap.swap_in(str(served), backup, now=_now(60))
    assert result["restored"] == ["db", "mlruns"]
    assert _store_read.store_info(str(served))["artifacts"] == 2


def test_refuses_a_symbolic_link_to_the_secrets(backup, served, secrets, artifacts):
    os.symlink(str(secrets), os.path.join(artifacts, "x"))
    problems = refused(backup, served, f"holds a symbolic link {os.path.relpath(artifacts, backup)}/x (to {secrets})")
    assert problems[0].endswith("a backup holds only files and folders; remove it")


def test_refuses_a_listed_file_replaced_by_a_link(backup, served, tmp_path):
    other = tmp_path / "other.db"
    os.rename(os.path.join(backup, "mlflow.db"), other)
    os.symlink(str(other), os.path.join(backup, "mlflow.db"))
    refused(backup, served, "holds a symbolic link mlflow.db")


def test_refuses_mlruns_as_a_link(backup, served, secrets):
    os.rename(os.path.join(backup, "mlruns"), os.path.join(os.path.dirname(backup), "elsewhere"))
    os.symlink(str(secrets), os.path.join(backup, "mlruns"))
    refused(backup, served, "holds a symbolic link mlruns (to")


def test_refuses_a_hard_link(backup, served, tmp_path, artifacts):
    os.link(os.path.join(artifacts, "model.bin"), tmp_path / "second-name")
    refused(backup, served, "model.bin with 2 hard links")


def _fifo(path):
    os.mkfifo(path)


def _socket(path):
    # Bound by a relative name: a socket address holds at most 107 bytes, less than a test's path may be.
    server, before = socket.socket(socket.AF_UNIX), os.getcwd()
    try:
        os.chdir(os.path.dirname(path))
        server.bind(os.path.basename(path))
    finally:
        os.chdir(before)
        server.close()


def _device(path):
    try:
        os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 3))
    except PermissionError as error:
        pytest.skip(f"cannot make a device file here: {error}")


@pytest.mark.parametrize(
    "make, kind", [(_fifo, "a named pipe (FIFO)"), (_socket, "a socket"), (_device, "a device file")]
)
def test_refuses_a_special_file(backup, served, make, kind):
    make(os.path.join(backup, "mlruns", "s"))
    refused(backup, served, f"holds mlruns/s, {kind}")


def test_refuses_a_file_the_manifest_does_not_list(backup, served, artifacts):
    with open(os.path.join(artifacts, "extra.pkl"), "wb") as handle:
        handle.write(b"\x80\x04not in the manifest")
    refused(backup, served, "extra.pkl, which its manifest.json does not list")


def test_refuses_a_folder_the_manifest_does_not_list(backup, served):
    os.mkdir(os.path.join(backup, "secrets"), 0o700)
    refused(backup, served, "holds a folder secrets that its manifest.json does not list")


def edit_manifest(backup, name):
    path = os.path.join(backup, "manifest.json")
    with open(path) as handle:
        manifest = json.load(handle)
    manifest["files"][name] = {"sha256": "0" * 64, "size": 1}
    with open(path, "w") as handle:
        json.dump(manifest, handle)


@pytest.mark.parametrize(
    "name, expected",
    [
        ("../../../../etc/shadow", "which climbs out of the backup folder with '..'"),
        ("mlruns/../../x", "which climbs out of the backup folder with '..'"),
        ("/etc/shadow", "lists an absolute name '/etc/shadow'"),
        ("mlruns//x", "which is not a plain relative file name"),
    ],
)
def test_refuses_a_manifest_name_outside_the_backup_and_reads_nothing(backup, served, monkeypatch, name, expected):
    edit_manifest(backup, name)
    read = []
    real_sha256 = _backup.sha256
    monkeypatch.setattr(_backup, "sha256", lambda path: read.append(path) or real_sha256(path))
    refused(backup, served, expected)
    assert read == []


def test_refuses_a_backup_folder_of_another_account(backup, served):
    os.chown(backup, MEMBER_UID, MEMBER_UID)
    refused(backup, served, f"belongs to uid {MEMBER_UID}, not root (chown root {backup}")


def test_refuses_a_parent_folder_of_another_account(backup, served):
    parent = os.path.dirname(backup)
    os.chown(parent, MEMBER_UID, MEMBER_UID)
    refused(backup, served, f"is inside {parent}, which belongs to uid {MEMBER_UID}, not root")


def test_refuses_a_parent_folder_others_can_write(backup, served):
    parent = os.path.dirname(backup)
    os.chmod(parent, 0o777)
    refused(backup, served, f"is inside {parent}, which can be written by group or others, mode 0777")


def test_refuses_a_backup_folder_the_group_can_write(backup, served):
    os.chmod(backup, 0o770)
    refused(backup, served, "can be written by group or others, mode 0770")


def test_refuses_an_entry_of_another_account(backup, served, artifacts):
    os.chown(os.path.join(artifacts, "notes.txt"), MEMBER_UID, MEMBER_UID)
    refused(backup, served, f"notes.txt, which belongs to uid {MEMBER_UID}")


def test_a_sticky_parent_is_trusted_but_not_a_sticky_backup_folder(backup, served):
    """Like /tmp: in a sticky folder nobody but root can rename or remove what root owns."""
    os.chmod(os.path.dirname(backup), 0o1777)
    assert _backup.trust_problems(backup) == []
    os.chmod(backup, 0o1777)
    refused(backup, served, "can be written by group or others, mode 1777")


def test_a_link_on_the_way_is_followed_only_when_root_owns_it(backup, served, tmp_path):
    link = str(tmp_path / "latest")
    os.symlink(backup, link)
    assert _backup.trust_problems(link) == []
    os.lchown(link, MEMBER_UID, MEMBER_UID)
    assert _backup.trust_problems(link) == [
        f"is reached through the symbolic link {link}, which belongs to uid {MEMBER_UID}: give the backup's real path"
    ]


def test_a_path_that_is_not_normalized_is_refused(backup):
    assert _backup.trust_problems(backup + "/../" + os.path.basename(backup))[0].startswith(
        "is not a normalized absolute path"
    )


def test_many_problems_are_counted_not_all_listed(backup, served):
    for i in range(30):
        open(os.path.join(backup, "mlruns", f"extra-{i:02d}"), "w").close()
    problems = _backup.trust_problems(backup)
    assert len(problems) == _backup.MAX_PROBLEMS + 1
    assert problems[-1] == "and 10 more such problems"


def test_make_private_never_follows_a_folder_link(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    os.chmod(outside, 0o755)
    (outside / "file").write_text("x")
    os.chmod(outside / "file", 0o644)
    tree = tmp_path / "tree"
    (tree / "inner").mkdir(parents=True)
    os.chmod(tree / "inner", 0o755)
    os.symlink(str(outside), tree / "inner" / "link")
    os.symlink(str(outside / "file"), tree / "file-link")
    _backup._make_private(str(tree))
    assert stat.S_IMODE(os.stat(tree / "inner").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(outside).st_mode) == 0o755
    assert stat.S_IMODE(os.stat(outside / "file").st_mode) == 0o644


def test_a_backup_leaves_links_and_special_files_out_and_stays_restorable(served, secrets, tmp_path):
    run = next(os.walk(served / "mlruns" / "1"))[1][0]
    artifacts = served / "mlruns" / "1" / run / "artifacts"
    os.symlink(str(secrets), artifacts / "x")
    os.symlink(str(secrets / "basic_auth.ini"), artifacts / "ini")
    os.mkfifo(artifacts / "pipe")
    summary = _backup.create_backup(str(served), str(tmp_path / "backups"), "manual", now=_now(0))
    assert sorted(summary["skipped"]) == [
        f"ini in {artifacts} (a symbolic link)",
        f"pipe in {artifacts} (a named pipe (FIFO))",
        f"x in {artifacts} (a symbolic link)",
    ]
    assert summary["counts"]["artifacts"] == 2
    copied = snapshot(summary["path"])
    assert not any(b"not-for-members" in (data or b"") for data in copied.values())
    assert _backup.trust_problems(summary["path"]) == []
    assert stat.S_IMODE(os.stat(secrets).st_mode) == 0o700


def test_a_backup_refuses_a_store_whose_mlruns_is_a_link(served, secrets, tmp_path):
    os.rename(served / "mlruns", tmp_path / "real-mlruns")
    os.symlink(str(secrets), served / "mlruns")
    with pytest.raises(_store_read.StoreError, match="mlruns is a symbolic link"):
        _backup.create_backup(str(served), str(tmp_path / "backups"), "manual", now=_now(0))
    assert os.listdir(tmp_path / "backups") == []


def test_copy_file_never_follows_a_link(tmp_path):
    (tmp_path / "target").write_text("secret")
    os.symlink(str(tmp_path / "target"), tmp_path / "link")
    with pytest.raises(OSError):
        _backup.copy_file(str(tmp_path / "link"), str(tmp_path / "copy"))
    assert not (tmp_path / "copy").exists()
    _backup.copy_file(str(tmp_path / "target"), str(tmp_path / "copy"))
    assert (tmp_path / "copy").read_text() == "secret"
