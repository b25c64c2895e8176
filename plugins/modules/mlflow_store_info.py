#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: mlflow_store_info
short_description: Read an MLflow store on the server host in one pass
version_added: 0.2.0
description:
  - Reports what a store directory holds without changing it. It reads the schema revision and row counts
    of C(mlflow.db) and C(basic_auth.db), counts the artifact files in C(mlruns/), and reads the image that
    the Compose file on disk runs, which is the image that wrote the data.
  - With O(postgres), RV(db) and RV(auth_db) describe that PostgreSQL database instead, and RV(sqlite) still
    describes C(mlflow.db) (before a migration, say). With O(s3), RV(artifacts) counts the bucket's objects.
  - A damaged or unreachable database is reported in RV(db.error) and does not fail the module.
  - With O(backup_dir), it also lists the backups there, newest last.
author:
  - mlops.mlflow developers (@mlops)
extends_documentation_fragment:
  - mlops.mlflow.attributes
  - mlops.mlflow.attributes.info_module
  - mlops.mlflow.mlflow_store
  - mlops.mlflow.mlflow_store.store_dir
options:
  backup_dir:
    description: A backup directory to list.
    type: path
seealso:
  - module: mlops.mlflow.mlflow_backup
"""

EXAMPLES = r"""
- name: Read the store
  mlops.mlflow.mlflow_store_info:
    store_dir: /opt/mlflow
  register: store

- name: Show the schema revision of the data
  ansible.builtin.debug:
    msg: "{{ store.db.schema_revision }}, written by {{ store.compose_image }}"
"""

RETURN = r"""
exists:
  description: Whether the store directory exists.
  returned: always
  type: bool
marker:
  description: Whether the directory carries the role's marker file (only such a directory may be purged).
  returned: always
  type: bool
db:
  description: C(mlflow.db).
  returned: always
  type: dict
  contains:
    exists:
      description: Whether the file exists.
      type: bool
      returned: always
    size:
      description: Its size in bytes.
      type: int
      returned: always
    schema_revision:
      description: Its alembic revision; V(null) when it never served.
      type: str
      returned: always
    counts:
      description: Rows of experiments, runs, active runs, metrics, params and tags.
      type: dict
      returned: always
    workspaces:
      description:
        - The workspaces that hold experiments, registered models or webhooks (MLflow 3), sorted; V([]) for a
          database without them or without workspaces.
        - V(null) with O(postgres), whose database is not read for them.
      type: list
      elements: str
      returned: always
      version_added: 0.6.0
    error:
      description: Why it could not be read, or V(null).
      type: str
      returned: always
auth_db:
  description: >-
    C(basic_auth.db) or the basic-auth tables, with the keys of RV(db) but RV(db.workspaces) (counts of users and
    permissions).
  returned: always
  type: dict
sqlite:
  description: C(mlflow.db), with the same keys as RV(db), whatever the backend.
  returned: always
  type: dict
  version_added: 0.3.0
backend:
  description: V(postgresql) with O(postgres), else V(sqlite).
  returned: always
  type: str
  version_added: 0.3.0
artifacts:
  description: Files in C(mlruns/), or objects in the bucket with O(s3); V(null) when the bucket cannot be read.
  returned: always
  type: int
artifacts_error:
  description: Why the bucket could not be read, or V(null).
  returned: always
  type: str
  version_added: 0.3.0
database_data:
  description:
    - The data folders of managed database services in the store that hold a database, such as V(postgres) when
      C(<store_dir>/postgres) holds a PostgreSQL cluster; empty when none does.
    - Before 0.6.0 this was C(postgres_data), a boolean.
  returned: always
  type: list
  elements: str
  sample: [postgres]
  version_added: 0.6.0
compose_services:
  description: The services of the Compose file on disk.
  returned: always
  type: list
  elements: str
  version_added: 0.3.0
compose_image:
  description: The image the Compose file on disk runs, or V(null) when there is none.
  returned: always
  type: str
  sample: ghcr.io/mlflow/mlflow:v3.17.2
backups:
  description: With O(backup_dir), its backups oldest first, each with name, path, label, counts and anomaly.
  returned: when backup_dir is given
  type: list
  elements: dict
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.mlops.mlflow.plugins.module_utils._backends import BACKEND_ARGUMENT_SPEC, backends  # noqa: E402
from ansible_collections.mlops.mlflow.plugins.module_utils._backup import list_backups  # noqa: E402
from ansible_collections.mlops.mlflow.plugins.module_utils._store_read import store_info  # noqa: E402


def main():
    module = AnsibleModule(
        argument_spec=dict(
            store_dir=dict(type="path", required=True), backup_dir=dict(type="path"), **BACKEND_ARGUMENT_SPEC
        ),
        supports_check_mode=True,
    )
    db, s3 = backends(module)
    result = store_info(module.params["store_dir"], db=db, s3=s3)
    if module.params["backup_dir"]:
        result["backups"] = [
            {
                "name": backup["name"],
                "path": backup["path"],
                "label": (backup["manifest"] or {}).get("label"),
                "counts": (backup["manifest"] or {}).get("counts"),
                "anomaly": (backup["manifest"] or {}).get("anomaly"),
            }
            for backup in list_backups(module.params["backup_dir"])
        ]
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
