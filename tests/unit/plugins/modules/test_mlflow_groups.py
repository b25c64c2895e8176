# -*- coding: utf-8 -*-
# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""mlflow_groups: its plan from what MLflow holds, and the module run the way Ansible runs it against
a real MLflow 3 server (the venv's, with basic-auth and workspaces) on this machine's loopback."""

from __future__ import annotations

import pytest
import requests
from ansible_collections.mlops.mlflow.plugins.modules import mlflow_groups as m
from ansible_collections.mlops.mlflow.tests.unit.plugins.modules.mlflow_server import ADMIN, running_mlflow
from ansible_collections.mlops.mlflow.tests.unit.plugins.modules.store_modules import run

VISION = {"name": "vision", "description": "Computer vision", "access": "READ"}
NLP = {"name": "nlp", "description": "Language models", "access": "EDIT"}


def our_role(role_id, workspace, access="READ", grant_ids=(1, 2, 3)):
    grants = [("workspace", "USE"), ("experiment", access), ("registered_model", access)]
    return {
        "id": role_id,
        "name": m.ROLE,
        "workspace": workspace,
        "permissions": [
            {"id": gid, "resource_type": kind, "resource_pattern": "*", "permission": permission}
            for gid, (kind, permission) in zip(grant_ids, grants, strict=True)
        ],
    }


def personal(role_id, user_id, workspace, experiment):
    grant = {"id": 100 + role_id, "resource_type": "experiment", "resource_pattern": experiment, "permission": "MANAGE"}
    return {"id": role_id, "name": f"__user_{user_id}__", "workspace": workspace, "permissions": [grant]}


def converged():
    """MLflow after a run for vision (ann, cat) and nlp (ben, cat); cat made experiment 4 in vision."""
    vision, nlp = our_role(10, "vision"), our_role(11, "nlp", "EDIT", (4, 5, 6))
    workspaces = {"default": "Default workspace", "vision": "Computer vision", "nlp": "Language models"}
    users = [
        {"username": "admin", "id": 1, "roles": []},
        {"username": "ann", "id": 2, "roles": [vision]},
        {"username": "ben", "id": 3, "roles": [nlp]},
        {"username": "cat", "id": 4, "roles": [vision, nlp, personal(20, 4, "vision", "4")]},
    ]
    return workspaces, [vision, nlp], users


MEMBERS = [
    {"username": "ann", "groups": ["vision"]},
    {"username": "ben", "groups": ["nlp"]},
    {"username": "cat", "groups": ["vision", "nlp"]},
]
NOTHING = {
    "create_workspace": [],
    "describe_workspace": [],
    "create_role": [],
    "grants": [],
    "assign": [],
    "unassign": [],
    "drop_personal": [],
    "left": [],
}


def test_a_new_server_gets_every_workspace_role_grant_and_member():
    actions = m.plan([VISION, NLP], MEMBERS, {"default": ""}, [], [{"username": "ann", "roles": []}])
    assert actions["create_workspace"] == ["vision", "nlp"] and actions["create_role"] == ["vision", "nlp"]
    assert ("add", "nlp", ("experiment", "*"), "EDIT") in actions["grants"] and len(actions["grants"]) == 6
    assert actions["assign"] == [("ann", "vision")]


def test_a_converged_server_needs_nothing():
    workspaces, roles, users = converged()
    assert m.plan([VISION, NLP], MEMBERS, workspaces, roles, users) == NOTHING


def test_a_member_who_leaves_loses_the_role_and_their_personal_grants_there_only():
    workspaces, roles, users = converged()
    members = [*MEMBERS[:2], {"username": "cat", "groups": ["nlp"]}]
    actions = m.plan([VISION, NLP], members, workspaces, roles, users)
    assert actions == {
        **NOTHING,
        "unassign": [("cat", "vision")],
        "drop_personal": [("cat", "vision", 20)],
        "left": [{"user": "cat", "group": "vision", "resources": ["experiment 4"]}],
    }


def test_a_closed_group_loses_every_member_and_a_stranger_keeps_their_own_grants():
    workspaces, roles, users = converged()
    # dan is no member of the team list: he loses the role, and his own grants stay his.
    users.append({"username": "dan", "id": 5, "roles": [roles[0], personal(21, 5, "vision", "7")]})
    actions = m.plan(
        [NLP],
        [MEMBERS[1], {"username": "cat", "groups": ["nlp"]}, MEMBERS[0] | {"groups": []}],
        workspaces,
        roles,
        users,
    )
    assert sorted(actions["unassign"]) == [("ann", "vision"), ("cat", "vision"), ("dan", "vision")]
    assert actions["drop_personal"] == [("cat", "vision", 20)]
    assert actions["create_workspace"] == actions["create_role"] == actions["assign"] == []


def test_a_changed_access_and_a_stray_grant_are_set_right_and_other_roles_are_left_alone():
    workspaces, roles, users = converged()
    roles[0]["permissions"].append(
        {"id": 9, "resource_type": "prompt", "resource_pattern": "*", "permission": "MANAGE"}
    )
    seeded = {"id": 30, "name": "user", "workspace": "vision", "permissions": []}
    actions = m.plan(
        [VISION | {"access": "EDIT", "description": "CV"}, NLP], MEMBERS, workspaces, [*roles, seeded], users
    )
    assert actions["grants"] == [
        ("update", "vision", 2, "EDIT"),
        ("update", "vision", 3, "EDIT"),
        ("remove", "vision", 9, None),
    ]
    assert actions["describe_workspace"] == ["vision"]
    assert actions["unassign"] == actions["assign"] == []


@pytest.mark.parametrize(
    ("groups", "members", "says"),
    [
        ([{"name": "Vision", "description": "", "access": "READ"}], [], "group name 'Vision' must be"),
        ([{"name": "default", "description": "", "access": "READ"}], [], "group name 'default' must be"),
        ([VISION, VISION], [], "group 'vision' is listed more than once"),
        ([VISION], [{"username": "ann", "groups": ["nlp"]}], "member 'ann' is in nlp, which groups does not list"),
        ([VISION], [{"username": "ann", "groups": []}] * 2, "member 'ann' is listed more than once"),
    ],
)
def test_arguments_it_cannot_use_are_refused_before_any_call(capsys, groups, members, says):
    # Nothing listens there: a refusal must come before the first call.
    code, out = run(m, capsys, url="http://127.0.0.1:9", admin_password="x" * 12, groups=groups, members=members)
    assert code == 1 and says in out["msg"] and out["msg"].startswith("Nothing was changed"), out


def as_member(url, user, method, path, workspace, **kwargs):
    headers = {"X-MLFLOW-WORKSPACE": workspace}
    return requests.request(
        method, url + path, auth=(user, f"{user}-Secret-123"), headers=headers, timeout=30, **kwargs
    )


def test_the_module_against_mlflow_itself(tmp_path, capsys):
    # Started and stopped inside the test: ansible-test runs each test in a process of its own, where a
    # fixture wider than the test is never torn down (its server would outlive the run).
    with running_mlflow(tmp_path) as url:
        run_the_module_against(url, capsys)


def run_the_module_against(url, capsys):
    args = {"url": url, "admin_username": ADMIN[0], "admin_password": ADMIN[1], "groups": [VISION, NLP]}
    members = [*MEMBERS, {"username": "nobody", "groups": ["vision"]}]

    # Check mode predicts and writes nothing.
    code, out = run(m, capsys, **args, members=members, _ansible_check_mode=True)
    assert code == 0 and out["changed"] and out["created"] == ["vision", "nlp"], out
    assert requests.get(url + "/api/3.0/mlflow/workspaces", auth=ADMIN).json()["workspaces"][0]["name"] == "default"
    assert len(requests.get(url + "/api/3.0/mlflow/workspaces", auth=ADMIN).json()["workspaces"]) == 1

    code, out = run(m, capsys, **args, members=members)
    assert code == 0 and out["changed"], out
    assert out["groups"] == {"vision": ["ann", "cat"], "nlp": ["ben", "cat"]} and out["missing_users"] == ["nobody"]
    code, out = run(m, capsys, **args, members=members)
    assert code == 0 and out["changed"] is False, out

    created = as_member(url, "cat", "POST", "/api/2.0/mlflow/experiments/create", "vision", json={"name": "cat-vision"})
    assert created.status_code == 200, created.text
    experiment = created.json()["experiment_id"]
    get = "/api/2.0/mlflow/experiments/get"
    assert as_member(url, "ann", "GET", get, "vision", params={"experiment_id": experiment}).status_code == 200
    assert as_member(url, "ben", "GET", get, "vision", params={"experiment_id": experiment}).status_code == 403

    code, out = run(m, capsys, **args, members=[*MEMBERS[:2], {"username": "cat", "groups": ["nlp"]}])
    assert code == 0 and out["left"] == [{"user": "cat", "group": "vision", "resources": [f"experiment {experiment}"]}]
    assert as_member(url, "cat", "GET", get, "vision", params={"experiment_id": experiment}).status_code == 403
    # The control: her groupmates still read what she left, and she still works in nlp.
    assert as_member(url, "ann", "GET", get, "vision", params={"experiment_id": experiment}).status_code == 200
    created = as_member(url, "cat", "POST", "/api/2.0/mlflow/experiments/create", "nlp", json={"name": "cat-nlp"})
    assert created.status_code == 200, created.text


def test_a_server_without_workspaces_is_refused_with_what_to_do(tmp_path, capsys):
    with running_mlflow(tmp_path, workspaces=False) as url:
        code, out = run(m, capsys, url=url, admin_username=ADMIN[0], admin_password=ADMIN[1], groups=[VISION])
        # Nothing was made: MLflow holds no role of the module's.
        roles = requests.get(url + "/api/3.0/mlflow/roles/list", auth=ADMIN, timeout=30)
    assert code == 1 and "runs without workspaces" in out["msg"] and "mlflow_server_workspaces: true" in out["msg"], out
    assert roles.status_code == 200 and [r for r in roles.json().get("roles", []) if r["name"] == m.ROLE] == [], (
        roles.text
    )
