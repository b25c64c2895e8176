# -*- coding: utf-8 -*-
# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""playbooks/onboard.yml's team checks (the role mlops.mlflow.team), run for real with ansible-playbook:
no two members share a server account or an MLflow user, and no member gets the MLflow admin's name.

The server is this host over the local connection, with accounts and authentication off, so the
server play changes nothing; the members' PCs are an address where nothing listens, so a member
that passes the checks ends as unreachable before any change. That is the control:
a clean team gets past the checks and each member is tried."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
PLAYBOOK = ROOT / "playbooks" / "onboard.yml"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBQ3zEbiQ3o2UBw9hfp7yTQ+aH7Q0cRMWV9Ilnmlrvht x@pc"


def ansible_playbook():
    beside_python = Path(sys.executable).parent / "ansible-playbook"
    return str(beside_python) if beside_python.exists() else shutil.which("ansible-playbook")


@pytest.fixture(scope="module")
def collections_path():
    """A folder whose ansible_collections/mlops/mlflow is this tree, for the playbook's mlops.mlflow modules."""
    for parent in Path(__file__).absolute().parents:
        if parent.name == "ansible_collections":
            yield str(parent.parent)
            return
    scratch = tempfile.mkdtemp(prefix="onboard-collections-")
    os.makedirs(os.path.join(scratch, "ansible_collections", "mlops"))
    os.symlink(str(ROOT), os.path.join(scratch, "ansible_collections", "mlops", "mlflow"))
    yield scratch
    shutil.rmtree(scratch)


def member(name, **values):
    return {"name": name, "pc": "pc", "local_user": name, "public_key": KEY, **values}


def onboard(tmp_path, collections_path, team, server_vars=None):
    inventory = {
        "all": {"vars": {"mlflow_team": team}},
        "mlflow_servers": {
            "hosts": {
                "server": {
                    "ansible_connection": "local",
                    "ansible_python_interpreter": sys.executable,
                    **(server_vars or {}),
                }
            }
        },
        # Nothing listens on port 1: each member that passes the checks is unreachable.
        "mlflow_clients": {
            "hosts": {"pc": {"ansible_host": "127.0.0.1", "ansible_port": 1, "ansible_connection": "ssh"}}
        },
    }
    (tmp_path / "inventory.json").write_text(json.dumps(inventory))
    env = dict(
        os.environ,
        ANSIBLE_COLLECTIONS_PATH=collections_path,
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_HOST_KEY_CHECKING="False",
        ANSIBLE_SSH_ARGS="-o ConnectTimeout=5",
        ANSIBLE_RETRY_FILES_ENABLED="False",
    )
    result = subprocess.run(
        [ansible_playbook(), "-i", str(tmp_path / "inventory.json"), str(PLAYBOOK)],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    return result.returncode, result.stdout + result.stderr


def test_a_clean_team_passes_the_checks_and_each_member_is_tried(tmp_path, collections_path):
    team = [member("alice"), member("bob", mlflow_username="bob@lab")]
    code, output = onboard(tmp_path, collections_path, team)
    assert code != 0, output
    assert "shares" not in output and "REFUSED" not in output, output
    for name in ("alice", "bob"):
        assert f"fatal: [mlflow-member-{name}]: UNREACHABLE" in output, output


@pytest.mark.parametrize(
    "team, shared",
    [
        ([member("alice"), member("eve", server_user="alice")], "server_user alice (alice, eve)"),
        (
            [member("alice", mlflow_username="ml"), member("bob", mlflow_username="ml")],
            "mlflow_username ml (alice, bob)",
        ),
        # mlflow_username defaults to server_user: eve's explicit name is alice's default one.
        ([member("alice"), member("eve", mlflow_username="alice")], "mlflow_username alice (alice, eve)"),
        (
            [member("alice"), member("eve", state="absent", local_user="x", server_user="alice")],
            "server_user alice (alice, eve)",
        ),
    ],
)
def test_members_sharing_an_account_are_refused_before_any_change(tmp_path, collections_path, team, shared):
    code, output = onboard(tmp_path, collections_path, team)
    assert code != 0
    assert f"mlflow_team shares {shared}" in output, output
    assert "Nothing was changed." in output
    # Refused before any member became a host: nothing was tried.
    assert "mlflow-member-" not in output and "NO RESULT" not in output, output


@pytest.mark.parametrize(
    "values, server_vars, admin",
    [
        ({"mlflow_username": "admin"}, {}, "admin"),
        # With no mlflow_username, the server account's name is the MLflow user's.
        ({"server_user": "admin"}, {}, "admin"),
        ({"mlflow_username": "boss"}, {"mlflow_server_auth_admin_username": "boss"}, "boss"),
    ],
)
def test_the_mlflow_admins_name_is_refused(tmp_path, collections_path, values, server_vars, admin):
    team = [member("alice"), member("eve", **values)]
    code, output = onboard(tmp_path, collections_path, team, server_vars)
    assert code != 0
    assert (
        f"eve: REFUSED before any change: mlflow_username {admin} is the MLflow admin of server "
        "(mlflow_server_auth_admin_username); give the member a name of their own (mlflow_username)"
    ) in output, output
    # The control in the same run: alice passed the checks and was tried.
    assert "alice: NO RESULT" in output, output


def play(tmp_path, collections_path, inventory, playbook, extra, marker):
    """Run a test playbook beside this file on inventory with the team role; the JSON its debug
    line prints after marker."""
    (tmp_path / "inventory.json").write_text(json.dumps(inventory))
    result = subprocess.run(
        [
            ansible_playbook(),
            "-i",
            str(tmp_path / "inventory.json"),
            str(Path(__file__).with_name(playbook)),
            "-e",
            json.dumps({"team_role": str(ROOT / "roles" / "team"), **extra}),
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        env=dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections_path, ANSIBLE_NOCOLOR="1"),
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    line = next(line for line in result.stdout.splitlines() if f"{marker} " in line)
    return json.loads(json.loads(line.split(": ", 1)[1]).split(f"{marker} ", 1)[1])


def record(tmp_path, collections_path, stored, changes):
    """(made, next) of the record, from the server's read of it (None: no file) and the members' changes."""
    server = {"ansible_connection": "local"}
    if stored is not None:
        server["__mlflow_team_record_file"] = {"content": base64.b64encode(json.dumps(stored).encode()).decode()}
    members = {f"m{i}": {"__mlflow_team_record_change": change} for i, change in enumerate(changes)}
    members["m-none"] = {}
    inventory = {
        "mlflow_servers": {"hosts": {"server": server}},
        "mlflow_members": {"hosts": members},
        "all": {"vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}},
    }
    found = play(tmp_path, collections_path, inventory, "record.yml", {}, "RECORD")
    return found["made"], found["next"]


def test_the_record_keeps_what_onboarding_created_and_drops_what_it_deleted(tmp_path, collections_path):
    made, after = record(
        tmp_path,
        collections_path,
        {"users": ["carol", "alice"]},
        [{"add": "bob"}, {"add": "alice"}, {"remove": "carol"}],
    )
    assert made == ["carol", "alice"]
    assert after == ["alice", "bob"]


def test_no_record_yet_means_onboarding_created_nobody(tmp_path, collections_path):
    made, after = record(tmp_path, collections_path, None, [{"add": "bob"}])
    assert made == [] and after == ["bob"]


def settings(tmp_path, collections_path, extra):
    """The team role's settings as a run uses them, for these extra vars (server: localhost)."""
    inventory = {"mlflow_servers": {"hosts": {"localhost": {"ansible_connection": "local", "ansible_host": "gpu-1"}}}}
    return play(tmp_path, collections_path, inventory, "settings.yml", extra, "SETTINGS")


def test_without_old_names_the_settings_are_the_role_s_defaults_and_the_server_s(tmp_path, collections_path):
    assert settings(tmp_path, collections_path, {}) == {
        "manage_accounts": False,
        "check_tunnel": True,
        "health_timeout": 30,
        "server_port": 500,
        "member_access": "tunnel",
        "allow_existing": False,
        "server_address": "gpu-1",
    }


def test_each_name_before_0_5_0_is_read_where_the_new_one_keeps_its_default(tmp_path, collections_path):
    old = {
        "mlflow_onboard_manage_accounts": True,
        "mlflow_onboard_check_tunnel": False,
        "mlflow_onboard_health_timeout": 90,
        "mlflow_onboard_server_port": 502,
        "mlflow_onboard_member_access": "shell",
        "mlflow_onboard_allow_existing_accounts": True,
        "mlflow_onboard_server_address": "lab.example.org",
    }
    assert settings(tmp_path, collections_path, old) == {
        "manage_accounts": True,
        "check_tunnel": False,
        "health_timeout": 90,
        "server_port": 502,
        "member_access": "shell",
        "allow_existing": True,
        "server_address": "lab.example.org",
    }


def test_a_new_name_that_is_set_wins_over_the_old_one(tmp_path, collections_path):
    found = settings(
        tmp_path,
        collections_path,
        {
            "mlflow_onboard_server_port": 502,
            "mlflow_team_server_port": 501,
            "mlflow_onboard_health_timeout": 90,
            "mlflow_team_health_timeout": 45,
            "mlflow_onboard_server_address": "old.example.org",
            "mlflow_team_server_address": "new.example.org",
        },
    )
    assert (found["server_port"], found["health_timeout"], found["server_address"]) == (501, 45, "new.example.org")
