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
  - Makes the owner role (the user of O(postgres.uri)) when it is missing, takes every extra power from it (superuser,
    create role, create database, replication, bypass RLS), and gives it the database of O(postgres.uri), its public
    schema and every table, view, sequence and type in it. Then sets its password to its line in
    O(postgres.pgpass_file).
  - MLflow, the backups, the restores and the migration connect as that role, so a crafted dump or an SQL injection
    cannot run C(COPY ... TO PROGRAM) or read files in the container.
  - The server role calls it whenever it starts the managed PostgreSQL, on new and on restored data.
author:
  - mlops.mlflow developers (@mlops)
extends_documentation_fragment:
  - mlops.mlflow.attributes
  - mlops.mlflow.attributes.changes
  - mlops.mlflow.attributes.idempotent
  - mlops.mlflow.mlflow_store
attributes:
  check_mode:
    details:
      - The same statements run in a transaction that is rolled back, so check mode reports what would move.
options:
  postgres:
    description:
      - The managed database, as the other modules take it. The container is the host of O(postgres.uri), the owner
        role its user and the database its path. The owner's password is its line in O(postgres.pgpass_file).
      - The password goes to psql on standard input only, never on a command line, and is masked in every message.
      - O(postgres.image) and O(postgres.network) are not used.
    required: true
  superuser:
    description: The superuser that runs the statements, by peer authentication inside the container.
    type: str
    default: mlflow
notes:
  - The option O(s3) of the shared fragment is not used.
  - The role's password is set at every run, which PostgreSQL does not report; the module reports a change only
    when a role, power or object moved.
seealso:
  - module: mlops.mlflow.mlflow_backup
"""

EXAMPLES = r"""
- name: Give MLflow's database to its owner role, which is no superuser
  mlops.mlflow.mlflow_postgres_owner:
    postgres:
      image: postgres:17
      uri: postgresql://mlflow_owner@mlflow-postgres:5432/mlflow
      pgpass_file: /opt/mlflow/secrets/pgpass
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

from urllib.parse import urlsplit  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.mlops.mlflow.plugins.module_utils._backends import BACKEND_ARGUMENT_SPEC  # noqa: E402
from ansible_collections.mlops.mlflow.plugins.module_utils.mlflow_postgres import (  # noqa: E402
    PostgresError,
    owner_changes,
    owner_script,
    pgpass_password,
)


def main():
    spec = dict(BACKEND_ARGUMENT_SPEC, superuser=dict(type="str", default="mlflow"))
    spec["postgres"] = dict(spec["postgres"], required=True)
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    p = module.params
    target = urlsplit(p["postgres"]["uri"])
    container, owner, database = target.hostname, target.username, target.path.lstrip("/")
    if not (container and owner and database):
        module.fail_json(msg=f"postgres.uri {p['postgres']['uri']} must name the user, the container and the database.")
    pgpass = p["postgres"]["pgpass_file"]
    try:
        with open(pgpass, encoding="utf-8") as handle:
            password = pgpass_password(handle.read(), owner)
    except OSError as error:
        module.fail_json(msg=f"postgres.pgpass_file: cannot read the owner's password from {pgpass}: {error}.")
    if not password:
        module.fail_json(msg=f"postgres.pgpass_file: {pgpass} has no password for {owner}; write one into it.")
    try:
        script = owner_script(owner, password, check_mode=module.check_mode)
    except PostgresError as error:
        module.fail_json(msg=f"{error}.")
    argv = ["docker", "exec", "-i", "-u", "postgres", container]
    argv += ["psql", "-X", "-q", "-U", p["superuser"], "-d", database, "-f", "-"]
    rc, out, err = module.run_command(argv, data=script, binary_data=True)
    if rc != 0:
        said = (err or out).replace(password, "********").strip()[-800:]
        module.fail_json(
            msg=(
                f"Giving the database {database} to the role {owner} failed in {container}"
                f" (psql exit {rc}): {said}. MLflow is not started on a database its role cannot use;"
                f" see `docker logs {container}`."
            )
        )
    moved = owner_changes(err)
    module.exit_json(
        changed=bool(moved),
        moved=moved,
        msg="; ".join(moved) if moved else f"{database} belongs to {owner}, which is no superuser.",
    )


if __name__ == "__main__":
    main()
