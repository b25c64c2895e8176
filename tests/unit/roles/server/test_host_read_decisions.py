# -*- coding: utf-8 -*-
# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What the server role decides from the one host read (vars/main/main.yml), evaluated with
Ansible's own templating (decide.yml) for pretend host reads: whether the admin's password is
due for rotation (the health wait and admin.yml read the record then), and whether the stored
keys are due to move to a new passphrase (keys.yml stages it, rekey.yml moves them, start.yml
starts MLflow after). The host read keys each secret file's SHA-1 with the run's digest key."""

import hashlib
import json

import pytest
from ansible_collections.mlops.mlflow.tests.unit.roles.server.role_play import play

SECRETS = "/opt/mlflow/secrets"
KEY = "digest-key-of-this-run"
DEFAULT_KEK = "mlflow-default-kek-passphrase-for-development-only"


def read(content=None, mode="0600"):
    """A file as the host read reports it: missing, or with its keyed SHA-1."""
    if content is None:
        return {"exists": False, "mode": None, "owner": None, "sha1": None}
    return {"exists": True, "mode": mode, "owner": "root", "sha1": hashlib.sha1((KEY + content).encode()).hexdigest()}


def files(admin=None, kek=None, kek_next=None):
    return {
        f"{SECRETS}/admin_password": read(admin),
        f"{SECRETS}/kek_passphrase": read(kek),
        f"{SECRETS}/kek_passphrase.next": read(kek_next),
    }


CASES = {
    # (host read, variables): (admin rotation due, rekey due)
    "new store": ({"case_files": files()}, (False, False)),
    "record is the configured password": ({"case_files": files(admin="configured-admin-pw")}, (False, False)),
    "record differs": ({"case_files": files(admin="older-admin-pw")}, (True, False)),
    "configured passphrase recorded": (
        {"case_files": files(kek="lab-passphrase"), "case_kek_passphrase": "lab-passphrase"},
        (False, False),
    ),
    "configured passphrase is new": (
        {"case_files": files(kek="lab-passphrase"), "case_kek_passphrase": "another-passphrase"},
        (False, True),
    ),
    "a move was staged and not finished": ({"case_files": files(kek="generated", kek_next="next")}, (False, True)),
    "none configured, MLflow on its default": ({"case_files": files(kek=DEFAULT_KEK)}, (False, True)),
    "none configured, a generated one recorded": ({"case_files": files(kek="generated")}, (False, False)),
    "served before the role kept one, none configured": (
        {"case_files": files(), "case_compose_image": "mlops/mlflow:3.17.2"},
        (False, True),
    ),
    "new store, passphrase configured": (
        {"case_files": files(), "case_kek_passphrase": "lab-passphrase"},
        (False, False),
    ),
}


@pytest.fixture(scope="module")
def decided(tmp_path_factory):
    out = tmp_path_factory.mktemp("decide")
    play("decide.yml", {f"case{i}": case for i, (case, _want) in enumerate(CASES.values())}, out)
    return {name: json.loads((out / f"case{i}.json").read_text()) for i, name in enumerate(CASES)}


@pytest.mark.parametrize("case", CASES)
def test_the_role_decides_from_the_host_read(decided, case):
    admin, rekey = CASES[case][1]
    assert decided[case] == {"admin_rotation_due": admin, "rekey_due": rekey}
