#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: mlflow_postgres_owner
short_description: Give the managed PostgreSQL's MLflow database to an owner role that is no superuser
version_added: 0.6.0
description:
  - Runs on the MLflow server host, against the managed PostgreSQL container, as its superuser by peer
    authentication (C(docker exec -u postgres ... psql)).
  - Makes the role O(owner) when it is missing, takes every extra power from it (superuser, create role, create
    database, replication, bypass RLS), and gives it the database O(database), its public schema and every table,
    view, sequence and type in it. Then sets its password to the content of O(password_file).
  - MLflow, the backups, the restores and the migration connect as that role, so a crafted dump or an SQL injection
    cannot run C(COPY ... TO PROGRAM) or read files in the container.
  - The server role calls it whenever it starts the managed PostgreSQL, on new and on restored data.
author:
  - mlops.mlflow developers (@mlops)
extends_documentation_fragment:
  - mlops.mlflow.attributes
  - mlops.mlflow.attributes.changes
  - mlops.mlflow.attributes.idempotent
attributes:
  check_mode:
    details:
      - The same statements run in a transaction that is rolled back, so check mode reports what would move.
options:
  container:
    description: The running PostgreSQL container.
    type: str
    required: true
  owner:
    description: The owner role, a plain lower-case PostgreSQL name.
    type: str
    required: true
  password_file:
    description:
      - A root-only file on the host whose content (without the final line break) becomes the role's password.
      - The password goes to psql on standard input only, never on a command line, and is masked in every message.
    type: path
    required: true
  database:
    description: The database to give away.
    type: str
    default: mlflow
  superuser:
    description: The superuser that runs the statements, by peer authentication inside the container.
    type: str
    default: mlflow
notes:
  - The role's password is set at every run, which PostgreSQL does not report; the module reports a change only
    when a role, power or object moved.
seealso:
  - module: mlops.mlflow.mlflow_backup
"""

EXAMPLES = r"""
- name: Give MLflow's database to its owner role, which is no superuser
  mlops.mlflow.mlflow_postgres_owner:
    container: mlflow-postgres
    owner: mlflow_owner
    password_file: /opt/mlflow/secrets/postgres_owner_password
"""

RETURN = r"""
moved:
  description: What moved, one line each (the role made, its powers taken, how many objects given); empty when
    nothing did. In check mode, what would move.
  returned: always
  type: list
  elements: str
  sample: [made the role mlflow_owner, gave 12 objects to mlflow_owner]
msg:
  description: What was done.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.mlops.mlflow.plugins.module_utils.mlflow_postgres import (  # noqa: E402
    PostgresError,
    owner_changes,
    owner_script,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            container=dict(type="str", required=True),
            owner=dict(type="str", required=True),
            password_file=dict(type="path", required=True, no_log=False),
            database=dict(type="str", default="mlflow"),
            superuser=dict(type="str", default="mlflow"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        with open(p["password_file"], encoding="utf-8") as handle:
            password = handle.read().rstrip("\n")
    except OSError as error:
        module.fail_json(msg=f"password_file: cannot read the owner's password from {p['password_file']}: {error}.")
    if not password:
        module.fail_json(msg=f"password_file: {p['password_file']} is empty; write the owner's password into it.")
    try:
        script = owner_script(p["owner"], password, check_mode=module.check_mode)
    except PostgresError as error:
        module.fail_json(msg=f"{error}.")
    argv = ["docker", "exec", "-i", "-u", "postgres", p["container"]]
    argv += ["psql", "-X", "-q", "-U", p["superuser"], "-d", p["database"], "-f", "-"]
    rc, out, err = module.run_command(argv, data=script, binary_data=True)
    if rc != 0:
        said = (err or out).replace(password, "********").strip()[-800:]
        module.fail_json(
            msg=(
                f"Giving the database {p['database']} to the role {p['owner']} failed in {p['container']}"
                f" (psql exit {rc}): {said}. MLflow is not started on a database its role cannot use;"
                f" see `docker logs {p['container']}`."
            )
        )
    moved = owner_changes(err)
    module.exit_json(
        changed=bool(moved),
        moved=moved,
        msg="; ".join(moved) if moved else f"{p['database']} belongs to {p['owner']}, which is no superuser.",
    )


if __name__ == "__main__":
    main()
