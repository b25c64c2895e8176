# -*- coding: utf-8 -*-
# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""mlflow_member_accounts: the account commands it runs (against a stand-in account database), and the
authorized_keys it writes into a real home directory (this test's own account)."""

from __future__ import annotations

import json
import os
import stat
from types import SimpleNamespace

import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.mlops.mlflow.plugins.modules import mlflow_member_accounts as m

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBQ3zEbiQ3o2UBw9hfp7yTQ+aH7Q0cRMWV9Ilnmlrvht alice@laptop"
OTHER = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGx1dkG8oZkE5n0x2n4K0PjSBV9yNyD4wSxrk4xnDj5Q admin@desk"
TUNNEL = 'restrict,port-forwarding,permitopen="127.0.0.1:500"'
# A member's uid: this test's own when it is a member's, else one root may chown to.
MEMBER_UID = os.getuid() if os.getuid() >= 1000 else 2000


def entry(**changes):
    base = {
        "name": "alice",
        "user": "alice",
        "state": "present",
        "public_key": KEY,
        "key_options": TUNNEL,
        "manage_account": True,
        "shell": "/usr/sbin/nologin",
        "comment": "mlops.mlflow member alice",
        "groups": ["mlflow-members"],
    }
    return {**base, **changes}


class FakeAccounts:
    """passwd and group as a dict; useradd/usermod/userdel change it, like the real commands."""

    def __init__(self, home, users=None, groups=None):
        self.home = home
        self.users = dict(users or {})
        self.groups = {"mlflow-members": set(), **(groups or {})}
        self.uids = {}
        self.commands = []
        self.fail = {}

    def lookup(self, user):
        if user not in self.users:
            return None
        shell, comment = self.users[user]
        return SimpleNamespace(
            pw_shell=shell,
            pw_gecos=comment,
            pw_dir=str(self.home),
            pw_uid=self.uids.get(user, MEMBER_UID),
            pw_gid=os.getgid(),
        )

    def group_names(self, user):
        return sorted(name for name, members in self.groups.items() if user in members)

    def group_exists(self, name):
        return name in self.groups

    def run(self, argv):
        self.commands.append(argv)
        user = argv[-1]
        if argv[0] in self.fail:
            return self.fail[argv[0]]
        words = [word for word in argv[1:-1] if word not in ("--create-home", "--no-user-group", "--remove")]
        option = dict(zip(words[::2], words[1::2], strict=True))
        if argv[0] in ("useradd", "usermod"):
            self.users[user] = (option["--shell"], option["--comment"])
            wanted = set(filter(None, option.get("--groups", "").split(",")))
            for name, members in self.groups.items():
                members.discard(user)
                if name in wanted:
                    members.add(user)
        elif argv[0] == "userdel":
            del self.users[user]
        return 0, "", ""


@pytest.fixture
def accounts(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    return FakeAccounts(home)


def keys_file(accounts):
    return accounts.home / ".ssh" / "authorized_keys"


def test_a_new_member_gets_an_account_and_a_private_tunnel_only_key(accounts):
    result = m.sync_member(entry(), accounts.run, False, accounts)
    assert (result["account"], result["key"], result["changed"], result["failed"]) == ("created", "added", True, False)
    [useradd] = accounts.commands
    assert useradd[0] == "useradd" and useradd[-1] == "alice"
    assert "--groups" in useradd and "mlflow-members" in useradd and "/usr/sbin/nologin" in useradd
    assert keys_file(accounts).read_text() == f"{TUNNEL} {KEY}\n"
    assert stat.S_IMODE(keys_file(accounts).stat().st_mode) == 0o600
    assert stat.S_IMODE((accounts.home / ".ssh").stat().st_mode) == 0o700


def test_a_second_run_changes_nothing(accounts):
    m.sync_member(entry(), accounts.run, False, accounts)
    accounts.commands.clear()
    result = m.sync_member(entry(), accounts.run, False, accounts)
    assert (result["account"], result["key"], result["changed"]) == ("unchanged", "unchanged", False)
    assert accounts.commands == []


def test_check_mode_reports_the_change_and_makes_none(accounts):
    result = m.sync_member(entry(), accounts.run, True, accounts)
    assert (result["account"], result["key"], result["changed"]) == ("created", "added", True)
    assert accounts.commands == [] and not (accounts.home / ".ssh").exists()


def test_shell_access_drops_the_group_and_the_key_restrictions(accounts):
    m.sync_member(entry(), accounts.run, False, accounts)
    result = m.sync_member(entry(shell="/bin/bash", groups=[], key_options=""), accounts.run, False, accounts)
    assert (result["account"], result["key"]) == ("updated", "updated")
    assert accounts.commands[-1][:2] == ["usermod", "--shell"] and accounts.group_names("alice") == []
    assert keys_file(accounts).read_text() == f"{KEY}\n"


def test_an_account_of_the_module_keeps_only_the_members_key(accounts):
    m.sync_member(entry(), accounts.run, False, accounts)
    keys_file(accounts).write_text(f"{OTHER}\n{TUNNEL} {KEY}\n")
    result = m.sync_member(entry(), accounts.run, False, accounts)
    assert result["key"] == "updated" and keys_file(accounts).read_text() == f"{TUNNEL} {KEY}\n"


@pytest.mark.parametrize("manage_account", [False, True])
def test_an_allowed_existing_account_keeps_its_settings_and_other_keys(accounts, manage_account):
    """Named in allow_existing_accounts: only the member's key, whatever manage_account says."""
    accounts.users["alice"] = ("/bin/zsh", "Alice Smith")
    (accounts.home / ".ssh").mkdir(mode=0o700)
    keys_file(accounts).write_text(f"# admin\n{OTHER}\n{KEY}\n")
    allowed = {"alice"}
    result = m.sync_member(entry(manage_account=manage_account), accounts.run, False, accounts, allowed)
    assert (result["account"], result["key"]) == ("kept", "updated")
    assert accounts.commands == [] and accounts.users["alice"] == ("/bin/zsh", "Alice Smith")
    assert keys_file(accounts).read_text() == f"# admin\n{OTHER}\n{TUNNEL} {KEY}\n"
    leaving = entry(manage_account=manage_account, state="absent")
    left = m.sync_member(leaving, accounts.run, False, accounts, allowed)
    assert (left["account"], left["key"]) == ("kept", "removed")
    assert keys_file(accounts).read_text() == f"# admin\n{OTHER}\n" and "alice" in accounts.users


def test_an_existing_account_must_exist(accounts):
    result = m.sync_member(entry(manage_account=False), accounts.run, False, accounts)
    assert result["failed"] and "does not exist" in result["msg"] and accounts.commands == []


def test_a_leaving_member_loses_the_account_the_module_made(accounts):
    m.sync_member(entry(), accounts.run, False, accounts)
    result = m.sync_member(entry(state="absent"), accounts.run, False, accounts)
    assert (result["account"], result["changed"]) == ("removed", True)
    assert accounts.commands[-1] == ["userdel", "--remove", "alice"] and "alice" not in accounts.users
    again = m.sync_member(entry(state="absent"), accounts.run, False, accounts)
    assert (again["account"], again["changed"]) == ("absent", False)


def test_one_members_failure_is_reported_for_that_member_only(accounts):
    accounts.users["bob"] = ("/usr/sbin/nologin", "mlops.mlflow member bob")
    accounts.fail["userdel"] = (8, "", "userdel: user bob is currently used by process 4242\n")
    bob = m.sync_member(entry(name="bob", user="bob", state="absent"), accounts.run, False, accounts)
    alice = m.sync_member(entry(), accounts.run, False, accounts)
    assert bob["failed"] and "currently used by process 4242" in bob["msg"] and "rc 8" in bob["msg"]
    assert not alice["failed"] and alice["account"] == "created"


def test_a_missing_group_is_named(accounts):
    result = m.sync_member(entry(groups=["nosuchgroup"]), accounts.run, False, accounts)
    assert result["failed"] and "nosuchgroup" in result["msg"] and accounts.commands == []


def test_root_never_writes_through_a_symbolic_link(accounts, tmp_path):
    m.sync_member(entry(), accounts.run, False, accounts)
    outside = tmp_path / "shadow"
    outside.write_text("secret\n")
    keys_file(accounts).unlink()
    keys_file(accounts).symlink_to(outside)
    result = m.sync_member(entry(), accounts.run, False, accounts)
    assert result["failed"] and "not a regular file" in result["msg"]
    assert outside.read_text() == "secret\n"
    keys_file(accounts).unlink()
    (accounts.home / ".ssh").rmdir()
    (accounts.home / ".ssh").symlink_to(tmp_path)
    result = m.sync_member(entry(), accounts.run, False, accounts)
    assert result["failed"] and "symbolic link" in result["msg"]
    assert not (tmp_path / "authorized_keys").exists()


def test_bad_entries_are_refused_before_any_change(capsys):
    args = {"members": [entry(public_key="ssh-ed25519 AAAA\ncommand=x"), entry(name="root", user="root")]}
    with patch_module_args(args):
        with pytest.raises(SystemExit) as exit_info:
            m.main()
    result = json.loads(capsys.readouterr().out)
    assert exit_info.value.code == 1
    assert "members[alice].public_key must be one OpenSSH public key" in result["msg"]
    assert "members[root].user must be a lower-case account name other than root" in result["msg"]
    assert result["msg"].endswith("Nothing was changed.")


@pytest.mark.parametrize("state", ["present", "absent"])
@pytest.mark.parametrize("manage_account", [True, False])
def test_an_existing_account_the_module_did_not_create_is_refused(accounts, state, manage_account):
    accounts.users["alice"] = ("/bin/bash", "Alice Smith")
    (accounts.home / ".ssh").mkdir(mode=0o700)
    keys_file(accounts).write_text(f"{OTHER}\n")
    wanted = entry(state=state, manage_account=manage_account)
    result = m.sync_member(wanted, accounts.run, False, accounts, allowed={"bob"})
    assert result["failed"] and not result["changed"]
    assert result["msg"] == (
        "alice: the account alice exists and this module did not create it (its comment does not start with "
        "'mlops.mlflow member'); choose another user, or name alice in allow_existing_accounts to give it this "
        "member's key"
    )
    assert accounts.commands == [] and keys_file(accounts).read_text() == f"{OTHER}\n"
    # The control: the same account with the marker is the module's.
    accounts.users["alice"] = ("/bin/bash", "mlops.mlflow member alice")
    assert not m.sync_member(wanted, accounts.run, False, accounts)["failed"]


@pytest.mark.parametrize("uid", [0, 33, 999, 65534])
@pytest.mark.parametrize("state", ["present", "absent"])
def test_a_system_account_is_refused_even_with_the_marker_or_allowed(accounts, uid, state):
    accounts.users["www-data"] = ("/usr/sbin/nologin", "mlops.mlflow member www")
    accounts.uids["www-data"] = uid
    wanted = entry(name="www", user="www-data", state=state)
    result = m.sync_member(wanted, accounts.run, False, accounts, allowed={"www-data"})
    assert result["failed"] and accounts.commands == []
    assert result["msg"] == (
        f"www: the account www-data is a system account (uid {uid}); a member never gets one: choose another user"
    )
    accounts.uids["www-data"] = 1000
    assert not m.sync_member(wanted, accounts.run, False, accounts)["failed"]


def test_created_accounts_carry_the_marker(accounts):
    m.sync_member(entry(comment="Alice Smith"), accounts.run, False, accounts)
    assert accounts.users["alice"][1] == "mlops.mlflow member Alice Smith"
    m.sync_member(entry(name="bob", user="bob", comment=""), accounts.run, False, accounts)
    assert accounts.users["bob"][1] == "mlops.mlflow member bob"
    accounts.commands.clear()
    assert m.sync_member(entry(comment="Alice Smith"), accounts.run, False, accounts)["account"] == "unchanged"
    assert accounts.commands == []


def test_an_allowed_account_leaving_without_a_key_is_kept_and_named(accounts):
    accounts.users["alice"] = ("/bin/bash", "Alice Smith")
    leaving = entry(state="absent", public_key="")
    result = m.sync_member(leaving, accounts.run, False, accounts, allowed={"alice"})
    assert result["failed"] and "give public_key to take the member's key from it" in result["msg"]
    assert "alice" in accounts.users and accounts.commands == []


def run_module(capsys, **args):
    with patch_module_args(args):
        with pytest.raises(SystemExit) as exit_info:
            m.main()
    return exit_info.value.code, json.loads(capsys.readouterr().out)


def test_two_members_for_one_account_are_refused_before_any_change(capsys):
    members = [entry(), entry(name="eve", user="alice", key_options="")]
    code, result = run_module(capsys, members=members)
    assert code == 1
    assert result["msg"] == (
        "members alice, eve name the same user alice; each member needs an account of their own. Nothing was changed."
    )
    # The control: different users pass the arguments' checks (check mode, on this host's accounts).
    code, result = run_module(capsys, members=[entry(), entry(name="eve", user="eve")], _ansible_check_mode=True)
    assert code == 0 and result["msg"].startswith("2 members:")


def test_authorized_keys_with_a_second_name_is_not_read(accounts, tmp_path):
    m.sync_member(entry(), accounts.run, False, accounts)
    secret = tmp_path / "root-only"
    secret.write_text(f"{OTHER}\n")
    keys_file(accounts).unlink()
    os.link(secret, keys_file(accounts))
    result = m.sync_member(entry(), accounts.run, False, accounts)
    assert result["failed"] and "not a regular file with one name" in result["msg"]
    assert secret.read_text() == f"{OTHER}\n"
