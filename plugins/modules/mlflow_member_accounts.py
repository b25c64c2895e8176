#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: mlflow_member_accounts
short_description: Give a team's members their accounts and keys on the MLflow server, in one run
version_added: 0.4.0
description:
  - Runs on the MLflow server host, as root. For each entry of O(members) it makes sure the account exists with the
    given shell, comment and supplementary groups, and that C(~/.ssh/authorized_keys) holds the member's key with the
    given options. For a member who leaves, it removes the account (with its home) or only the key.
  - One module run for the whole team. A team of 20 costs about one run, where one M(ansible.builtin.user) and one
    C(ansible.posix.authorized_key) per member cost 40.
  - A failure for one member (a busy account, a key file it cannot write) is reported for that member in
    RV(failures), and the others still get their accounts. The module fails only on arguments it cannot use.
  - Writes C(authorized_keys) without following symbolic links, through the directory it opened. A member who owns
    C(~/.ssh) cannot make root write anywhere else. It reads the file the same way, and refuses one that is not a
    regular file, has more than one hard link or is larger than 1 MiB.
  - Every account it creates carries a comment (GECOS) that starts with C(mlops.mlflow member); a given
    O(members[].comment) that does not start so gets it in front. That marker is how a later run knows the account is
    the module's.
  - It never touches a system account (uid below 1000, or 65534 C(nobody)), and it refuses an existing account without
    the marker unless O(allow_existing_accounts) names it. Such an account keeps its shell, comment, groups, other keys
    and home, whatever O(members[].manage_account) says; only the member's key is added or removed.
  - Two entries for the same O(members[].user) are refused before any change.
author:
  - mlops.mlflow developers (@mlops)
extends_documentation_fragment:
  - mlops.mlflow.attributes
  - mlops.mlflow.attributes.changes
  - mlops.mlflow.attributes.idempotent
options:
  members:
    description: The members, one account each.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: The member's name, the key of RV(failures) and of each result.
        type: str
        required: true
      user:
        description: The member's account on the server.
        type: str
        required: true
      state:
        description: V(present) to give the account and key, V(absent) to take them away.
        type: str
        choices: [present, absent]
        default: present
      public_key:
        description:
          - One OpenSSH public key on one line (type, base64 and an optional comment).
          - Needed with O(members[].state=present), and with O(members[].state=absent) when
            O(members[].manage_account=false).
        type: str
        default: ''
      key_options:
        description:
          - C(authorized_keys) options written before the key, for example
            C(restrict,port-forwarding,permitopen="127.0.0.1:500"). Empty for an unrestricted key.
        type: str
        default: ''
      manage_account:
        description:
          - V(true) when the account is the module's. It creates the account, keeps its shell, comment and groups as
            given, keeps the member's key as the only one, and removes the account with its home when the member
            leaves.
          - V(false) for an account that existed before. It must exist. Only the member's key is added beside the
            others, or removed, and nothing else changes.
          - An existing account without the C(mlops.mlflow member) comment is handled as V(false), and only when
            O(allow_existing_accounts) names it.
        type: bool
        default: true
      shell:
        description: The account's login shell.
        type: str
        default: /usr/sbin/nologin
      comment:
        description:
          - The account's comment (GECOS). It always starts with C(mlops.mlflow member); one that does not gets it in
            front, and an empty one becomes C(mlops.mlflow member <name>).
        type: str
        default: ''
      groups:
        description: The account's supplementary groups, exactly. It leaves any other group.
        type: list
        elements: str
        default: []
  allow_existing_accounts:
    description:
      - Existing accounts the module did not create (their comment does not start with C(mlops.mlflow member)) that
        members may still use. Each only gets, or loses, the member's key. Nothing else about it changes, and it is
        never removed.
      - Any other existing account without the marker is refused for its member, and a system account (uid below
        1000, or 65534) always is.
    type: list
    elements: str
    default: []
    version_added: 0.5.0
notes:
  - Needs C(useradd), C(usermod) and C(userdel) (shadow-utils, as on Debian and Ubuntu).
  - A new account gets a home made from C(/etc/skel), and a group of its own name unless that group exists.
seealso:
  - module: ansible.builtin.user
  # A link, not a module reference: the collection no longer depends on ansible.posix.
  - name: ansible.posix.authorized_key
    description: The module that authorizes one key per run.
    link: https://docs.ansible.com/projects/ansible/latest/collections/ansible/posix/authorized_key_module.html
"""

EXAMPLES = r"""
- name: Give alice a tunnel-only account and bob a shell, and take carol's away
  mlops.mlflow.mlflow_member_accounts:
    members:
      - name: alice
        user: alice
        public_key: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBQ3zEbiQ3o2UBw9hfp7yTQ+aH7Q0cRMWV9Ilnmlrvht alice@laptop
        key_options: restrict,port-forwarding,permitopen="127.0.0.1:500"
        comment: mlops.mlflow member alice
        groups: [mlflow-members]
      - name: bob
        user: bob
        public_key: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGx1dkG8oZkE5n0x2n4K0PjSBV9yNyD4wSxrk4xnDj5Q bob@desk
        shell: /bin/bash
        comment: mlops.mlflow member bob
      - name: carol
        user: carol
        state: absent
  register: accounts

- name: Give dave's key to the account he had before onboarding, and nothing else
  mlops.mlflow.mlflow_member_accounts:
    members:
      - name: dave
        user: dave
        public_key: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBQ3zEbiQ3o2UBw9hfp7yTQ+aH7Q0cRMWV9Ilnmlrvht dave@laptop
        manage_account: false
    allow_existing_accounts: [dave]

- name: Show who could not be set up
  ansible.builtin.debug:
    var: accounts.failures
"""

RETURN = r"""
members:
  description: What was done (in check mode, would be done) for each member, in the order given.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The member's name.
      type: str
    user:
      description: The account.
      type: str
    account:
      description:
        - V(created), V(updated) (shell, comment or groups), V(removed), V(unchanged), V(absent) (nothing to
          remove), or V(kept) (an account the module does not manage).
      type: str
    key:
      description: V(added), V(updated) (other options, or other keys dropped), V(removed), V(unchanged) or V(absent).
      type: str
    changed:
      description: Whether anything changed for this member.
      type: bool
    failed:
      description: Whether this member could not be set up.
      type: bool
    msg:
      description: What was done, or what went wrong and what to fix.
      type: str
  sample:
    - {name: alice, user: alice, account: created, key: added, changed: true, failed: false,
       msg: "alice: account created, key added"}
failures:
  description: The members that could not be set up, by name, with the reason.
  returned: always
  type: dict
  sample:
    carol: "userdel carol failed (rc 8): user carol is currently used by process 4242"
    www: "the account www-data is a system account (uid 33); a member never gets one: choose another user"
msg:
  description: How many members changed and failed.
  returned: always
  type: str
  sample: "3 members: 2 changed, 0 failed"
"""

import grp  # noqa: E402
import os  # noqa: E402
import pwd  # noqa: E402
import re  # noqa: E402
import stat  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

# The key of an authorized_keys line (after any options): its type and base64 body.
KEY_RE = re.compile(r"(?:^|\s)((?:ssh|ecdsa|sk)-[A-Za-z0-9@.-]+)\s+([A-Za-z0-9+/]{16,}={0,3})(?=\s|$)")
PUBLIC_KEY_RE = re.compile(r"^((?:ssh|ecdsa|sk)-[A-Za-z0-9@.-]+) [A-Za-z0-9+/]{16,}={0,3}( [^\n\r\x00]*)?\Z")
KEYS_FILE = "authorized_keys"
# The start of the comment (GECOS) of every account the module creates: later runs know it is theirs.
MARKER = "mlops.mlflow member"
# Accounts below this uid (and nobody) are the system's, never a member's.
UID_MIN = 1000
NOBODY_UID = 65534
# An authorized_keys file larger than this is refused rather than read.
MAX_KEYS_BYTES = 1 << 20


class MemberError(Exception):
    """What went wrong for one member, in words that say what to fix."""


def key_of(line):
    """(type, base64) of an authorized_keys or public key line, or None for a comment or blank line."""
    if line.lstrip().startswith("#"):
        return None
    match = KEY_RE.search(line)
    return (match.group(1), match.group(2)) if match else None


def wanted_lines(lines, entry):
    """The authorized_keys lines the member's entry asks for, from the current ones."""
    key = key_of(entry["public_key"])
    if entry["state"] == "absent":
        return [line for line in lines if key_of(line) != key]
    line = (entry["key_options"] + " " if entry["key_options"] else "") + entry["public_key"].strip()
    if entry["manage_account"]:
        return [line]
    out, found = [], False
    for current in lines:
        if key_of(current) == key:
            if not found:
                out.append(line)
            found = True
        else:
            out.append(current)
    return out if found else [*out, line]


def _open_dir(name, dir_fd=None):
    """A directory's fd, never through a symbolic link (ELOOP or ENOTDIR then)."""
    return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)


def sync_keys(home, uid, gid, entry, check_mode):
    """Make ~/.ssh/authorized_keys hold what the entry asks; return added/updated/removed/unchanged/absent."""
    try:
        home_fd = os.open(home, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as error:
        raise MemberError(f"cannot open the home directory {home}: {error.strerror}") from error
    ssh_fd = None
    try:
        try:
            ssh_fd = _open_dir(".ssh", home_fd)
        except FileNotFoundError:
            ssh_fd = None
        except OSError as error:
            raise MemberError(f"{home}/.ssh is not a directory (or is a symbolic link): {error.strerror}") from error
        lines, info = [], None
        if ssh_fd is not None:
            try:
                info = os.stat(KEYS_FILE, dir_fd=ssh_fd, follow_symlinks=False)
            except FileNotFoundError:
                info = None
            if info is not None:
                if not stat.S_ISREG(info.st_mode):
                    raise MemberError(f"{home}/.ssh/{KEYS_FILE} is not a regular file (a symbolic link?); remove it")
                # O_NONBLOCK: a FIFO swapped in after the stat must not hang the team's run.
                fd = os.open(KEYS_FILE, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=ssh_fd)
                with os.fdopen(fd, encoding="utf-8", errors="surrogateescape") as handle:
                    info = os.fstat(fd)
                    if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1 or info.st_size > MAX_KEYS_BYTES:
                        raise MemberError(
                            f"{home}/.ssh/{KEYS_FILE} is not a regular file with one name of at most 1 MiB; remove it"
                        )
                    lines = handle.read(MAX_KEYS_BYTES + 1).splitlines()
        wanted = wanted_lines(lines, entry)
        key = key_of(entry["public_key"])
        had = any(key_of(line) == key for line in lines)
        if entry["state"] == "absent":
            outcome = "removed" if had else "absent"
        else:
            outcome = "unchanged" if wanted == lines else ("updated" if had else "added")
        if entry["state"] == "absent" and wanted == lines:
            return outcome
        dir_right = ssh_fd is not None and _owned_private(os.fstat(ssh_fd), uid, gid, 0o700)
        file_right = info is not None and _owned_private(info, uid, gid, 0o600)
        if outcome == "unchanged" and dir_right and file_right:
            return outcome
        if outcome == "unchanged":
            outcome = "updated"
        if check_mode:
            return outcome
        if ssh_fd is None:
            os.mkdir(".ssh", 0o700, dir_fd=home_fd)
            ssh_fd = _open_dir(".ssh", home_fd)
        os.fchown(ssh_fd, uid, gid)
        os.fchmod(ssh_fd, 0o700)
        _write_keys(ssh_fd, wanted, uid, gid)
        return outcome
    except OSError as error:
        raise MemberError(f"writing {home}/.ssh/{KEYS_FILE} failed: {error}") from error
    finally:
        if ssh_fd is not None:
            os.close(ssh_fd)
        os.close(home_fd)


def _owned_private(info, uid, gid, mode):
    return info.st_uid == uid and info.st_gid == gid and stat.S_IMODE(info.st_mode) == mode


def _write_keys(ssh_fd, lines, uid, gid):
    """Write the file beside the old one and rename it into place (never through a link)."""
    scratch = ".authorized_keys.mlflow-new"
    try:
        os.unlink(scratch, dir_fd=ssh_fd)
    except FileNotFoundError:
        pass
    fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=ssh_fd)
    try:
        os.fchown(fd, uid, gid)
        os.fchmod(fd, 0o600)
        os.write(fd, "".join(line + "\n" for line in lines).encode("utf-8", "surrogateescape"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(scratch, KEYS_FILE, src_dir_fd=ssh_fd, dst_dir_fd=ssh_fd)


def lookup(user):
    try:
        return pwd.getpwnam(user)
    except KeyError:
        return None


def group_names(user):
    """The account's supplementary groups."""
    return sorted(group.gr_name for group in grp.getgrall() if user in group.gr_mem)


def group_exists(name):
    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


def comment_for(entry):
    """The comment the account gets: always starting with the marker."""
    comment = (entry["comment"] or "").strip()
    return comment if comment.startswith(MARKER) else f"{MARKER} {comment or entry['name']}"


def owned(entry, account, allowed):
    """Whether the module may manage the existing account (True), only the member's key (False), or nothing (raises)."""
    user = entry["user"]
    if account.pw_uid < UID_MIN or account.pw_uid == NOBODY_UID:
        why = f"is a system account (uid {account.pw_uid})"
        raise MemberError(f"the account {user} {why}; a member never gets one: choose another user")
    if (account.pw_gecos or "").startswith(MARKER):
        return True
    if user in allowed:
        return False
    raise MemberError(
        f"the account {user} exists and this module did not create it (its comment does not start with "
        f"'{MARKER}'); choose another user, or name {user} in allow_existing_accounts to give it this member's key"
    )


def effective(entry, accounts, allowed):
    """The entry as the module may apply it: an existing account it did not create gets only the key."""
    account = accounts.lookup(entry["user"])
    if account is None or owned(entry, account, allowed):
        return entry
    if entry["state"] == "absent" and not entry["public_key"]:
        raise MemberError(
            f"the account {entry['user']} is not one this module created, so it is kept; give public_key to take "
            "the member's key from it"
        )
    return {**entry, "manage_account": False}


def sync_account(entry, run, check_mode, accounts):
    """Make the account as the entry asks; return created/updated/removed/unchanged/absent/kept."""
    user, account = entry["user"], accounts.lookup(entry["user"])
    if entry["state"] == "absent":
        if not entry["manage_account"]:
            return "kept"
        if account is None:
            return "absent"
        if not check_mode:
            _run(run, ["userdel", "--remove", user])
        return "removed"
    if not entry["manage_account"]:
        if account is None:
            raise MemberError(f"the account {user} does not exist, and it is not one this module manages")
        return "kept"
    groups = sorted(set(entry["groups"]))
    missing = [name for name in groups if not accounts.group_exists(name)]
    if missing:
        raise MemberError(f"the group(s) {', '.join(missing)} do not exist; create them first")
    comment = comment_for(entry)
    if account is None:
        command = ["useradd", "--create-home", "--shell", entry["shell"], "--comment", comment]
        if groups:
            command += ["--groups", ",".join(groups)]
        if accounts.group_exists(user):
            command.append("--no-user-group")
        if not check_mode:
            _run(run, [*command, user])
        return "created"
    if (account.pw_shell, account.pw_gecos, accounts.group_names(user)) == (entry["shell"], comment, groups):
        return "unchanged"
    if not check_mode:
        command = ["usermod", "--shell", entry["shell"], "--comment", comment, "--groups", ",".join(groups)]
        _run(run, [*command, user])
    return "updated"


def _run(run, argv):
    rc, out, err = run(argv)
    if rc != 0:
        raise MemberError(f"{' '.join(argv[:1] + argv[-1:])} failed (rc {rc}): {(err or out).strip() or 'no message'}")


class Accounts:
    """The account database, read through the C library (so NSS sees what useradd wrote)."""

    lookup = staticmethod(lookup)
    group_names = staticmethod(group_names)
    group_exists = staticmethod(group_exists)


def sync_member(entry, run, check_mode, accounts=Accounts, allowed=()):
    result = {"name": entry["name"], "user": entry["user"], "account": None, "key": None, "failed": False}
    try:
        entry = effective(entry, accounts, allowed)
        result["account"] = sync_account(entry, run, check_mode, accounts)
        if result["account"] in ("removed", "absent"):
            result["key"] = "removed" if result["account"] == "removed" else "absent"
        else:
            account = accounts.lookup(entry["user"])
            if account is None:  # created in check mode
                result["key"] = "added"
            else:
                result["key"] = sync_keys(account.pw_dir, account.pw_uid, account.pw_gid, entry, check_mode)
    except MemberError as error:
        result.update(failed=True, msg=f"{entry['name']}: {error}")
    result["changed"] = result["account"] in ("created", "updated", "removed") or result["key"] in (
        "added",
        "updated",
        "removed",
    )
    if not result["failed"]:
        result["msg"] = f"{entry['name']}: account {result['account']}, key {result['key']}"
    return result


def entry_problem(entry):
    """Why an entry cannot be used, or None."""
    needs_key = entry["state"] == "present" or not entry["manage_account"]
    if needs_key and not PUBLIC_KEY_RE.match(entry["public_key"] or ""):
        return (
            f"members[{entry['name']}].public_key must be one OpenSSH public key on one line "
            "(ssh-ed25519 AAAA... comment)"
        )
    if any(char in (entry["key_options"] or "") for char in "\n\r\x00"):
        return f"members[{entry['name']}].key_options must be one line"
    if entry["user"] in ("", "root") or not re.match(r"^[a-z_][a-z0-9_-]{0,31}\Z", entry["user"]):
        return f"members[{entry['name']}].user must be a lower-case account name other than root, got {entry['user']!r}"
    return None


def main():
    module = AnsibleModule(
        argument_spec=dict(
            members=dict(
                type="list",
                elements="dict",
                required=True,
                options=dict(
                    name=dict(type="str", required=True),
                    user=dict(type="str", required=True),
                    state=dict(type="str", choices=["present", "absent"], default="present"),
                    public_key=dict(type="str", default=""),
                    key_options=dict(type="str", default="", no_log=False),
                    manage_account=dict(type="bool", default=True),
                    shell=dict(type="str", default="/usr/sbin/nologin"),
                    comment=dict(type="str", default=""),
                    groups=dict(type="list", elements="str", default=[]),
                ),
            ),
            allow_existing_accounts=dict(type="list", elements="str", default=[]),
        ),
        supports_check_mode=True,
    )
    members = module.params["members"]
    problems = [problem for problem in map(entry_problem, members) if problem]
    names = [entry["name"] for entry in members]
    if len(set(names)) != len(names):
        problems.append("members must have different names")
    by_user = {}
    for entry in members:
        by_user.setdefault(entry["user"], []).append(entry["name"])
    for user, sharing in sorted(by_user.items()):
        if len(sharing) > 1:
            problems.append(
                f"members {', '.join(sharing)} name the same user {user}; each member needs an account of their own"
            )
    if problems:
        module.fail_json(msg="; ".join(problems) + ". Nothing was changed.")

    def run(argv):
        return module.run_command(argv)

    allowed = set(module.params["allow_existing_accounts"])
    results = [sync_member(entry, run, module.check_mode, allowed=allowed) for entry in members]
    failures = {result["name"]: result["msg"] for result in results if result["failed"]}
    changed = sum(1 for result in results if result["changed"])
    module.exit_json(
        changed=changed > 0,
        members=results,
        failures=failures,
        msg=f"{len(results)} members: {changed} changed, {len(failures)} failed",
    )


if __name__ == "__main__":
    main()
