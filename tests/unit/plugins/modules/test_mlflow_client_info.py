# -*- coding: utf-8 -*-
# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""mlflow_client_info, run the way Ansible runs it, on real files. Whether a file holds the block
is checked against Ansible's own blockinfile: for each file, the read says "holds it" exactly when
blockinfile, in check mode with the same marker and block, would change nothing."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import pwd
import sysconfig
from pathlib import Path

import pytest
from ansible_collections.mlops.mlflow.plugins.modules import mlflow_client_info
from ansible_collections.mlops.mlflow.tests.unit.plugins.modules.store_modules import run

# Ansible's own blockinfile, loaded from where ansible-core is installed: ansible-test's module unit
# tests can import only module_utils from the ansible package.
_SPEC = importlib.util.spec_from_file_location(
    "blockinfile", Path(sysconfig.get_paths()["purelib"]) / "ansible" / "modules" / "blockinfile.py"
)
blockinfile = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(blockinfile)

MARKER = "# {mark} mlops.mlflow.client Host mlflowserver"
BLOCK = "Host mlflowserver\n  HostName 192.0.2.10\n  LocalForward 127.0.0.1:5000 127.0.0.1:500"
BEGIN = MARKER.replace("{mark}", "BEGIN")
END = MARKER.replace("{mark}", "END")
WRITTEN = f"{BEGIN}\n{BLOCK}\n{END}\n"

CONTENTS = {
    "the block alone": WRITTEN,
    "the block between the user's hosts": f"Host lab\n  User me\n{WRITTEN}Host *\n  ServerAliveInterval 30\n",
    "another host's block beside it": WRITTEN.replace("mlflowserver", "other") + WRITTEN,
    "an older block": WRITTEN.replace("192.0.2.10", "192.0.2.99"),
    "a line added inside the block": WRITTEN.replace(END, "  User root\n" + END),
    "no block": "Host lab\n  User me\n",
    "an empty file": "",
    "the END marker missing": f"{BEGIN}\n{BLOCK}\n",
    "the markers swapped": f"{END}\n{BLOCK}\n{BEGIN}\n",
    "the block twice": WRITTEN + WRITTEN,
    "the END marker as the last line, without a newline": WRITTEN.rstrip("\n"),
    "Windows line ends": WRITTEN.replace("\n", "\r\n"),
}


def blockinfile_would_change(capsys, path, block=BLOCK):
    code, out = run(blockinfile, capsys, path=str(path), marker=MARKER, block=block, _ansible_check_mode=True)
    assert code == 0, out
    return out["changed"]


@pytest.mark.parametrize("block", [BLOCK, ""], ids=["a block to write", "an empty block, to remove"])
@pytest.mark.parametrize("case", CONTENTS)
def test_the_read_holds_the_block_exactly_when_blockinfile_would_change_nothing(tmp_path, capsys, case, block):
    config = tmp_path / "config"
    config.write_bytes(CONTENTS[case].encode())
    code, out = run(mlflow_client_info, capsys, blocks=[{"path": str(config), "marker": MARKER, "block": block}])
    assert code == 0 and out["changed"] is False, out
    assert out["blocks"] == [not blockinfile_would_change(capsys, config, block)]


def test_an_empty_block_is_held_in_a_missing_file(tmp_path, capsys):
    # Nothing to remove; the role runs blockinfile (create: false) only where the profile exists.
    blocks = [{"path": str(tmp_path / "none"), "marker": MARKER, "block": ""}]
    code, out = run(mlflow_client_info, capsys, blocks=blocks)
    assert code == 0 and out["blocks"] == [True], out


def test_the_control_the_block_blockinfile_wrote_is_held(tmp_path, capsys):
    # blockinfile itself writes the block into the user's config; the read then finds it.
    config = tmp_path / "config"
    config.write_text("Host lab\n  User me\nHost *\n  ServerAliveInterval 30\n")
    code, out = run(blockinfile, capsys, path=str(config), marker=MARKER, block=BLOCK, insertbefore="^Host \\*$")
    assert code == 0 and out["changed"] is True, out
    code, out = run(mlflow_client_info, capsys, blocks=[{"path": str(config), "marker": MARKER, "block": BLOCK}])
    assert out["blocks"] == [True], out


def test_a_missing_file_or_a_link_does_not_hold_the_block(tmp_path, capsys):
    real = tmp_path / "real"
    real.write_text(WRITTEN)
    (tmp_path / "link").symlink_to(real)
    blocks = [{"path": str(tmp_path / name), "marker": MARKER, "block": BLOCK} for name in ("real", "link", "none")]
    code, out = run(mlflow_client_info, capsys, blocks=blocks)
    assert code == 0 and out["blocks"] == [True, False, False], out


def test_files_are_read_without_following_links(tmp_path, capsys):
    folder = tmp_path / "ssh"
    folder.mkdir(mode=0o700)
    folder.chmod(0o700)
    helper = tmp_path / "mlflow-tunnel"
    helper.write_bytes(b"#!/bin/sh\necho tunnel\n")
    helper.chmod(0o755)
    (tmp_path / "link").symlink_to(folder)
    # Below a file: lstat fails (not a directory), as for a path the account may not read.
    paths = [folder, helper, tmp_path / "link", tmp_path / "missing", helper / "below"]
    code, out = run(mlflow_client_info, capsys, files=[str(path) for path in paths])
    assert code == 0 and out["changed"] is False, out
    me = pwd.getpwuid(os.getuid()).pw_name
    files = out["files"]
    assert files[str(folder)] == {"type": "directory", "mode": "0700", "owner": me, "gid": os.getgid(), "sha1": None}
    sha1 = hashlib.sha1(helper.read_bytes()).hexdigest()
    assert files[str(helper)] == {"type": "file", "mode": "0755", "owner": me, "gid": os.getgid(), "sha1": sha1}
    assert files[str(tmp_path / "link")]["type"] == "link"
    for unread in (tmp_path / "missing", helper / "below"):
        assert files[str(unread)] == {"type": None, "mode": None, "owner": None, "gid": None, "sha1": None}
