#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: mlflow_groups
short_description: Give a team's lab groups their MLflow workspaces, and each member a role in their groups' ones
version_added: 0.6.0
description:
  - Talks to an MLflow 3 server with authentication and workspaces on (C(mlflow server --app-name basic-auth
    --enable-workspaces)), as its admin, through MLflow's own REST API. Run it on the server host, against MLflow's
    port on the loopback.
  - Each group of O(groups) gets a workspace of its name, with its description, and a role named C(members) there.
    That role may use the workspace (create experiments and models in it) and has O(groups[].access) on every
    experiment and registered model in it, so groupmates read (or edit) each other's work. What a member creates
    stays theirs to manage, as MLflow grants it.
  - Each user of O(members) holds the role C(members) of exactly their groups. A member taken out of a group loses
    that role and their personal grants in its workspace (the MANAGE that MLflow gave them on what they created
    there). What they created stays in the workspace, readable by the group as before, and managed by the MLflow
    admin. RV(left) lists it.
  - A workspace that holds a role C(members) but is no longer in O(groups) is a closed group. Every user loses that
    role, and the members of O(members) their personal grants there. The workspace and its experiments stay, for the
    admin.
  - Workspaces, roles and grants the module did not make are left alone, and so are users who are not in
    O(members), except that the role C(members) is the module's and holds only the members it gives it.
  - One run reads MLflow four times (whether workspaces are on, the workspaces, the roles, the users with their
    roles) and writes only what differs. A second run with the same arguments changes nothing.
author:
  - mlops.mlflow developers (@mlops)
extends_documentation_fragment:
  - mlops.mlflow.attributes
  - mlops.mlflow.attributes.changes
  - mlops.mlflow.attributes.idempotent
options:
  url:
    description: MLflow's address, on the server's loopback.
    type: str
    default: http://127.0.0.1:500
  host_header:
    description:
      - The C(Host) header to send, one that MLflow's C(--allowed-hosts) lets in. Empty for C(localhost:<port of url>).
    type: str
    default: ''
  admin_username:
    description: The MLflow admin, who alone may create workspaces and roles.
    type: str
    default: admin
  admin_password:
    description: The MLflow admin's password.
    type: str
    required: true
  groups:
    description: Every group of the lab. A group that is not listed is closed.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description:
          - The group's name, and its workspace's. Lower-case letters, digits and inner C(-), 2 to 63 characters, not
            C(default) (MLflow's rule for workspace names).
        type: str
        required: true
      description:
        description: The workspace's description, shown in MLflow's workspace list.
        type: str
        default: ''
      access:
        description: What groupmates may do with each other's experiments and registered models.
        type: str
        choices: [READ, EDIT]
        default: READ
  members:
    description:
      - The team's MLflow users and their groups. A user of the list who is in no group holds no role C(members).
      - A user MLflow does not know is reported in RV(missing_users) and skipped, so the others still get their groups.
    type: list
    elements: dict
    default: []
    suboptions:
      username:
        description: The member's MLflow user.
        type: str
        required: true
      groups:
        description: The names of the member's groups, each one of O(groups).
        type: list
        elements: str
        default: []
  leave_alone:
    description:
      - MLflow users whose roles and grants the run leaves as they are, in every workspace, for example a member whose
        entry could not be read this time. They are not taken out of any group, nor put in one.
    type: list
    elements: str
    default: []
  timeout:
    description: Seconds to wait for each answer from MLflow.
    type: int
    default: 30
notes:
  - Turning workspaces on in MLflow is the server's part (the server role's C(mlflow_server_workspaces)). When they are
    off, the module fails and says so, before any change.
seealso:
  - name: MLflow's role-based access control
    description: Workspaces, roles and grants, as the module uses them.
    link: https://mlflow.org/docs/latest/self-hosting/security/role-based-access-control/
"""

EXAMPLES = r"""
- name: Give the vision and nlp groups their workspaces; cara is in both
  mlops.mlflow.mlflow_groups:
    url: http://127.0.0.1:500
    admin_password: "{{ vault_mlflow_admin_password }}"
    groups:
      - name: vision
        description: Computer vision group
      - name: nlp
        description: Language group
        access: EDIT
    members:
      - username: ann
        groups: [vision]
      - username: ben
        groups: [nlp]
      - username: cara
        groups: [vision, nlp]
  no_log: true
"""

RETURN = r"""
groups:
  description: Each group of O(groups), with the members that hold its role after the run.
  returned: always
  type: dict
  sample: {"vision": ["ann", "cara"], "nlp": ["ben", "cara"]}
created:
  description: The workspaces the run created (or would create, in check mode).
  returned: always
  type: list
  elements: str
  sample: [vision]
assigned:
  description: The members the run gave a group's role, as C(user) and C(group).
  returned: always
  type: list
  elements: dict
  sample: [{"user": "cara", "group": "vision"}]
left:
  description:
    - The members the run took out of a group, with the experiments and registered models they had personal grants
      on there (ids and names). Those stay in the workspace, for the group to read and the admin to manage.
  returned: always
  type: list
  elements: dict
  sample: [{"user": "cara", "group": "vision", "resources": ["experiment 4"]}]
missing_users:
  description: Members of O(members) that MLflow has no user for; they were skipped.
  returned: always
  type: list
  elements: str
  sample: []
"""

import json  # noqa: E402
import re  # noqa: E402
from urllib.error import HTTPError  # noqa: E402
from urllib.parse import urlencode, urlsplit  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible.module_utils.urls import open_url  # noqa: E402

ROLE = "members"
# MLflow's own rule (mlflow/store/workspace/abstract_store.py, WorkspaceNameValidator).
NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
RESERVED = {"default", "workspaces", "api", "ajax-api", "static-files"}
PERSONAL_RE = re.compile(r"^__user_[0-9]+__\Z")


def role_description(group):
    return f"The members of the lab group {group}, from the team list (mlops.mlflow onboarding manages this role)."


def wanted_grants(access):
    """The role's grants: (resource_type, pattern) -> permission."""
    return {("workspace", "*"): "USE", ("experiment", "*"): access, ("registered_model", "*"): access}


def check_arguments(groups, members):
    """What is wrong with the arguments, as messages; empty when they can be used."""
    problems = []
    names = [group["name"] for group in groups]
    for name in names:
        if not (2 <= len(name) <= 63 and NAME_RE.match(name)) or name in RESERVED:
            problems.append(
                f"group name {name!r} must be 2 to 63 lower-case letters, digits and inner '-', and not one of "
                f"{', '.join(sorted(RESERVED))} (MLflow's rule for workspace names)"
            )
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"group {name!r} is listed more than once")
    users = [member["username"] for member in members]
    for user in sorted({u for u in users if users.count(u) > 1}):
        problems.append(f"member {user!r} is listed more than once")
    for member in members:
        unknown = sorted(set(member["groups"]) - set(names))
        if unknown:
            problems.append(f"member {member['username']!r} is in {', '.join(unknown)}, which groups does not list")
    return problems


def plan(groups, members, workspaces, roles, users):
    """What to change, from what MLflow holds.

    workspaces: {name: description}; roles: MLflow's role list (each with workspace, name, id, permissions);
    users: MLflow's user list (each with username, id, roles), without the users to leave alone. Returns a dict
    of actions; the module reports missing users itself."""
    listed = {member["username"]: set(member["groups"]) for member in members}
    ours = {role["workspace"]: role for role in roles if role["name"] == ROLE}
    actions = {
        "create_workspace": [],
        "describe_workspace": [],
        "create_role": [],
        "grants": [],
        "assign": [],
        "unassign": [],
        "drop_personal": [],
        "left": [],
    }
    for group in groups:
        name = group["name"]
        if name not in workspaces:
            actions["create_workspace"].append(name)
        elif (workspaces[name] or "") != group["description"]:
            actions["describe_workspace"].append(name)
        role = ours.get(name)
        if role is None:
            actions["create_role"].append(name)
        held = {(p["resource_type"], p["resource_pattern"]): p for p in (role or {}).get("permissions", [])}
        want = wanted_grants(group["access"])
        for key, permission in want.items():
            if key not in held:
                actions["grants"].append(("add", name, key, permission))
            elif held[key]["permission"] != permission:
                actions["grants"].append(("update", name, held[key]["id"], permission))
        for key, grant in held.items():
            if key not in want:
                actions["grants"].append(("remove", name, grant["id"], None))
    wanted_groups = {group["name"] for group in groups}
    # Every workspace with our role: the listed groups, and closed ones (no member wanted).
    for workspace in sorted(wanted_groups | set(ours)):
        for user in users:
            holds = any(r["name"] == ROLE and r["workspace"] == workspace for r in user.get("roles", []))
            wants = workspace in wanted_groups and workspace in listed.get(user["username"], set())
            if wants and not holds:
                actions["assign"].append((user["username"], workspace))
            elif holds and not wants:
                actions["unassign"].append((user["username"], workspace))
            if not wants and user["username"] in listed:
                personal = [
                    r for r in user.get("roles", []) if r["workspace"] == workspace and PERSONAL_RE.match(r["name"])
                ]
                for role in personal:
                    actions["drop_personal"].append((user["username"], workspace, role["id"]))
                if holds or personal:
                    resources = sorted(
                        f"{p['resource_type'].replace('_', ' ')} {p['resource_pattern']}"
                        for r in personal
                        for p in r["permissions"]
                    )
                    actions["left"].append({"user": user["username"], "group": workspace, "resources": resources})
    return actions


class Api:
    def __init__(self, module):
        self.module = module
        self.url = module.params["url"].rstrip("/")
        port = urlsplit(self.url).port or 80
        self.host = module.params["host_header"] or f"localhost:{port}"

    def call(self, method, path, body=None, query=None):
        url = self.url + path + (("?" + urlencode(query)) if query else "")
        headers = {"Host": self.host}
        data = None
        if body is not None:
            data = json.dumps(body)
            headers["Content-Type"] = "application/json"
        try:
            answer = open_url(
                url,
                method=method,
                data=data,
                headers=headers,
                url_username=self.module.params["admin_username"],
                url_password=self.module.params["admin_password"],
                force_basic_auth=True,
                use_proxy=False,
                timeout=self.module.params["timeout"],
            )
            status, text = answer.getcode(), answer.read()
        except HTTPError as error:
            status, text = error.code, error.read()
        except Exception as error:  # pylint: disable=broad-except
            self.module.fail_json(msg=f"MLflow did not answer {method} {url}: {error}. Is it running on {self.url}?")
        try:
            parsed = json.loads(text or b"{}")
        except ValueError:
            parsed = {}
        if status >= 300:
            message = parsed.get("message") if isinstance(parsed, dict) else ""
            hint = (
                " Check the admin's password (the server's mlflow_server_auth_admin_password)." if status == 401 else ""
            )
            self.module.fail_json(
                msg=f"MLflow answered {method} {path} with HTTP {status}: {message or text[:300]!r}.{hint}"
            )
        return parsed


def apply(api, actions, groups, roles):
    """Carry out the plan. Returns nothing; fails the module on the first refusal."""
    by_group = {group["name"]: group for group in groups}
    role_ids = {role["workspace"]: role["id"] for role in roles if role["name"] == ROLE}
    for name in actions["create_workspace"]:
        api.call("POST", "/api/3.0/mlflow/workspaces", {"name": name, "description": by_group[name]["description"]})
    for name in actions["describe_workspace"]:
        api.call("PATCH", f"/api/3.0/mlflow/workspaces/{name}", {"description": by_group[name]["description"]})
    for name in actions["create_role"]:
        body = {"name": ROLE, "workspace": name, "description": role_description(name)}
        role_ids[name] = api.call("POST", "/api/3.0/mlflow/roles/create", body)["role"]["id"]
    for kind, name, key, permission in actions["grants"]:
        if kind == "add":
            body = {
                "role_id": role_ids[name],
                "resource_type": key[0],
                "resource_pattern": key[1],
                "permission": permission,
            }
            api.call("POST", "/api/3.0/mlflow/roles/permissions/add", body)
        elif kind == "update":
            api.call(
                "PATCH",
                "/api/3.0/mlflow/roles/permissions/update",
                {"role_permission_id": key, "permission": permission},
            )
        else:
            api.call("DELETE", "/api/3.0/mlflow/roles/permissions/remove", query={"role_permission_id": key})
    for user, name in actions["unassign"]:
        api.call("DELETE", "/api/3.0/mlflow/roles/unassign", query={"username": user, "role_id": role_ids[name]})
    for _user, _name, role_id in actions["drop_personal"]:
        api.call("DELETE", "/api/3.0/mlflow/roles/delete", query={"role_id": role_id})
    for user, name in actions["assign"]:
        api.call("POST", "/api/3.0/mlflow/roles/assign", {"username": user, "role_id": role_ids[name]})


def main():
    module = AnsibleModule(
        argument_spec={
            "url": {"type": "str", "default": "http://127.0.0.1:500"},
            "host_header": {"type": "str", "default": ""},
            "admin_username": {"type": "str", "default": "admin"},
            "admin_password": {"type": "str", "required": True, "no_log": True},
            "groups": {
                "type": "list",
                "elements": "dict",
                "default": [],
                "options": {
                    "name": {"type": "str", "required": True},
                    "description": {"type": "str", "default": ""},
                    "access": {"type": "str", "choices": ["READ", "EDIT"], "default": "READ"},
                },
            },
            "members": {
                "type": "list",
                "elements": "dict",
                "default": [],
                "options": {
                    "username": {"type": "str", "required": True},
                    "groups": {"type": "list", "elements": "str", "default": []},
                },
            },
            "leave_alone": {"type": "list", "elements": "str", "default": []},
            "timeout": {"type": "int", "default": 30},
        },
        supports_check_mode=True,
    )
    groups, members = module.params["groups"], module.params["members"]
    problems = check_arguments(groups, members)
    if problems:
        module.fail_json(msg="Nothing was changed: " + "; ".join(problems) + ".")
    api = Api(module)
    info = api.call("GET", "/api/3.0/mlflow/server-info")
    if not info.get("workspaces_enabled"):
        module.fail_json(
            msg=f"MLflow on {api.url} runs without workspaces, so it cannot hold lab groups. Set "
            "mlflow_server_workspaces: true and run site.yml, then onboarding again; nothing was changed."
        )
    workspaces = {
        w["name"]: w.get("description") for w in api.call("GET", "/api/3.0/mlflow/workspaces").get("workspaces", [])
    }
    roles = api.call("GET", "/api/3.0/mlflow/roles/list").get("roles", [])
    users = api.call("GET", "/api/2.0/mlflow/users/list").get("users", [])
    known = {user["username"] for user in users}
    handled = [user for user in users if user["username"] not in module.params["leave_alone"]]
    actions = plan(groups, [m for m in members if m["username"] in known], workspaces, roles, handled)
    actions["missing_users"] = sorted({m["username"] for m in members} - known)
    writes = [
        key
        for key in (
            "create_workspace",
            "describe_workspace",
            "create_role",
            "grants",
            "assign",
            "unassign",
            "drop_personal",
        )
        if actions[key]
    ]
    if writes and not module.check_mode:
        apply(api, actions, groups, roles)
    after = {group["name"]: set() for group in groups}
    for user in users:
        for group in after:
            holds = any(r["name"] == ROLE and r["workspace"] == group for r in user.get("roles", []))
            if (holds and (user["username"], group) not in actions["unassign"]) or (user["username"], group) in actions[
                "assign"
            ]:
                after[group].add(user["username"])
    module.exit_json(
        changed=bool(writes),
        groups={group: sorted(names) for group, names in after.items()},
        created=actions["create_workspace"],
        assigned=[{"user": user, "group": group} for user, group in actions["assign"]],
        left=actions["left"],
        missing_users=actions["missing_users"],
    )


if __name__ == "__main__":
    main()
