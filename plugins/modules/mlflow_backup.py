#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: mlflow_backup
short_description: Back up an MLflow store (SQLite or PostgreSQL, local or S3 artifacts) with a checked manifest
version_added: 0.2.0
description:
  - Runs on the MLflow server host. Copies the store's C(db/mlflow.db) (and C(db/basic_auth.db) when MLflow's
    basic-auth app keeps its users there) with SQLite's online backup API, which gives a consistent copy while MLflow
    writes, runs C(PRAGMA integrity_check) on each copy, then copies C(mlruns/) and C(docker-compose.yml).
    A backup keeps the databases at its top, as backups of earlier releases do.
  - With O(postgres), it dumps the PostgreSQL database instead (C(pg_dump --format=custom) into C(mlflow.pgdump)),
    from an exported snapshot, and counts the rows in the same snapshot, so the counts are exactly what the dump holds,
    while MLflow keeps writing. C(pg_restore --list) then reads the dump back.
  - With O(s3), it copies every object of the bucket into C(mlruns/), each file named by its key.
  - Databases are copied before the artifacts, so every artifact a backed-up run refers to is in the backup.
  - Writes C(manifest.json) with the MLflow version, the schema revision, the counts of experiments, runs,
    active runs, metrics, params, tags and artifact files, and the sha256 of every file.
  - Records the outcome of every run that is not a check, success or failure, in C(last_run.json) in O(backup_dir)
    (its time, whether it worked, the backup's name and size, or the error), where the server role's metrics read
    the last backup's result. A failed backup leaves the finished backups as they were.
  - Copies only folders and regular files, and never follows a link. A symbolic link, named pipe, socket or device
    file in C(mlruns/) (MLflow writes none) is left out, named in RV(skipped), and the module warns. A restore
    refuses a backup holding one, and a backup that failed on it would leave the team without any. A store whose
    C(mlruns/) or database is itself a link is refused.
  - The backup is written as a hidden C(.<name>.partial) folder, readable by root only from the first byte,
    and renamed to C(<UTC time>-<label>) only when complete.
  - When the active runs fell to zero, or by more than half, since the previous backup, the new backup is
    marked with an C(anomaly) in its manifest and the module warns. Only active runs count, because
    C(mlflow gc) removes runs marked deleted and never active ones.
  - Then keeps the newest O(keep) backups. It never deletes a path in O(protect), a marked backup, or the
    newest backup that holds runs and is not marked, so routine backups after an accident cannot rotate out
    the last good copy.
author:
  - mlops.mlflow developers (@mlops)
extends_documentation_fragment:
  - mlops.mlflow.attributes
  - mlops.mlflow.attributes.changes
  - mlops.mlflow.attributes.not_idempotent
  - mlops.mlflow.mlflow_store
  - mlops.mlflow.mlflow_store.store_dir
attributes:
  check_mode:
    details:
      - In check mode nothing is written or deleted; RV(deleted) lists what retention would delete.
  idempotent:
    details:
      - Every run writes a new backup.
options:
  backup_dir:
    description: Where backup folders are written; created with mode C(0700) when missing.
    type: path
    required: true
  label:
    description: Why the backup is taken; the end of the folder name (lower-case letters, digits and C(-)).
    type: str
    default: manual
  keep:
    description: How many backups to keep in O(backup_dir); at least 1.
    type: int
    default: 7
  protect:
    description: Backup folders retention must not delete (for example the source of a running restore).
    type: list
    elements: path
    default: []
  mlflow_version:
    description: Version of the MLflow that wrote the data, recorded in the manifest.
    type: str
notes:
  - Needs only Python's C(sqlite3) on the host, which Debian's and Ubuntu's C(python3) include; with O(postgres),
    also the C(docker) CLI and the PostgreSQL image.
seealso:
  - module: mlops.mlflow.mlflow_restore
  - module: mlops.mlflow.mlflow_store_info
"""

EXAMPLES = r"""
- name: Back up MLflow while it serves
  mlops.mlflow.mlflow_backup:
    store_dir: /opt/mlflow
    backup_dir: /var/backups/mlflow
    mlflow_version: 3.17.2
  register: backup

- name: Back up MLflow on PostgreSQL and S3 (the managed services of the server role)
  mlops.mlflow.mlflow_backup:
    store_dir: /opt/mlflow
    backup_dir: /var/backups/mlflow
    postgres:
      image: mlops/postgres:17
      network: mlflow_default
      uri: postgresql://mlflow_owner@mlflow-postgres:5432/mlflow
      pgpass_file: /opt/mlflow/secrets/pgpass
    s3:
      endpoint: http://172.18.0.3:8333
      bucket: mlflow
      credentials_file: /opt/mlflow/secrets/aws_credentials

- name: Show where it went
  ansible.builtin.debug:
    msg: "{{ backup.path }}: {{ backup.counts.runs }} runs"
"""

RETURN = r"""
path:
  description: The new backup folder; V(null) in check mode.
  returned: always
  type: str
  sample: /var/backups/mlflow/20261126T101500Z-manual
name:
  description: Its name.
  returned: success
  type: str
  sample: 20261126T101500Z-manual
counts:
  description: Rows and files in the backup.
  returned: success
  type: dict
  sample: {"experiments": 2, "runs": 10, "runs_active": 9, "metrics": 50, "params": 10, "tags": 40, "artifacts": 10}
backend:
  description: Where the tracking data came from, V(sqlite) or V(postgresql).
  returned: success
  type: str
  sample: postgresql
artifacts_store:
  description: Where the artifacts came from, V(local) or V(s3).
  returned: success
  type: str
  sample: s3
schema_revision:
  description: The tracking database's alembic revision; V(null) for a store that never served.
  returned: success
  type: str
  sample: 1b5f0d9ad7c1
bytes:
  description: Total size of the backup's files.
  returned: success
  type: int
  sample: 123456
anomaly:
  description: Why the backup looks like the store lost data since the previous backup, or V(null).
  returned: success
  type: str
  sample: active runs fell from 120 to 0 since the backup 20261125T101500Z-manual
auth:
  description: Schema revision and counts of C(basic_auth.db), or of the basic-auth tables in PostgreSQL.
  returned: when the store has them
  type: dict
  sample:
    schema_revision: 8606fa83a998
    counts: {"users": 3, "experiment_permissions": 2, "registered_model_permissions": 0}
deleted:
  description: Backup folders retention deleted (in check mode, would delete).
  returned: always
  type: list
  elements: str
kept:
  description: Older backups retention kept beyond O(keep), with the reason.
  returned: always
  type: dict
  sample: {"20261120T101500Z-manual": "the newest backup holding data"}
skipped:
  description: What was left out of the backup, because it is neither a folder nor a regular file, and why.
  returned: success
  type: list
  elements: str
  sample: ["x in /opt/mlflow/mlruns/1/r1/artifacts (a symbolic link)"]
  version_added: 0.5.0
msg:
  description: What was done.
  returned: always
  type: str
"""

import os  # noqa: E402
import shutil  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.mlops.mlflow.plugins.module_utils._backends import BACKEND_ARGUMENT_SPEC, backends  # noqa: E402
from ansible_collections.mlops.mlflow.plugins.module_utils._backup import (  # noqa: E402
    LABEL_RE,
    create_backup,
    record_last_run,
    retention,
)
from ansible_collections.mlops.mlflow.plugins.module_utils._store_read import StoreError  # noqa: E402


def main():
    module = AnsibleModule(
        argument_spec=dict(
            store_dir=dict(type="path", required=True),
            backup_dir=dict(type="path", required=True),
            label=dict(type="str", default="manual"),
            keep=dict(type="int", default=7),
            protect=dict(type="list", elements="path", default=[]),
            mlflow_version=dict(type="str"),
            **BACKEND_ARGUMENT_SPEC,
        ),
        supports_check_mode=True,
    )
    p = module.params
    if p["keep"] < 1:
        module.fail_json(msg=f"keep must be at least 1, got {p['keep']}.")
    if not LABEL_RE.match(p["label"]):
        module.fail_json(msg=f"label must be lower-case letters, digits and '-', got {p['label']!r}.")
    if not os.path.isdir(p["store_dir"]):
        module.fail_json(msg=f"store_dir {p['store_dir']} is not a directory: there is nothing to back up.")
    if module.check_mode:
        deleted, kept = retention(p["backup_dir"], p["keep"] - 1, p["protect"])
        module.exit_json(
            changed=True,
            path=None,
            skipped=[],
            deleted=deleted,
            kept=kept,
            msg=f"Would back up {p['store_dir']} to {p['backup_dir']}.",
        )
    db, s3 = backends(module)
    try:
        summary = create_backup(p["store_dir"], p["backup_dir"], p["label"], p["mlflow_version"], db=db, s3=s3)
        deleted, kept = retention(p["backup_dir"], p["keep"], p["protect"] + [summary["path"]])
        for path in deleted:
            shutil.rmtree(path)
    except StoreError as error:
        record_last_run(p["backup_dir"], False, error=str(error))
        module.fail_json(msg=str(error), path=None, deleted=[], kept={})
    except Exception as error:  # recorded as failed, then reported as Ansible reports a crash
        record_last_run(p["backup_dir"], False, error=f"{type(error).__name__}: {error}")
        raise
    record_last_run(p["backup_dir"], True, name=summary["name"], size=summary["bytes"])
    for what in summary["skipped"]:
        module.warn(f"Left out of the backup {summary['path']}: {what}. A backup holds only folders and files.")
    if summary["anomaly"]:
        module.warn(
            f"Backup {summary['path']} is marked: {summary['anomaly']}. It and the newest backup holding data are "
            "kept outside the rotation; check the store before you trust or delete either."
        )
    counts = summary["counts"]
    summary.update(
        changed=True,
        deleted=deleted,
        kept=kept,
        msg=(
            f"Backup of MLflow {summary['mlflow_version'] or '(version unknown)'} "
            f"(schema {summary['schema_revision']}): "
            f"{counts['experiments']} experiments, {counts['runs']} runs, {counts['artifacts']} artifact files, "
            f"{summary['bytes']} bytes, {summary['integrity_check']}, in {summary['path']}."
        ),
    )
    module.exit_json(**summary)


if __name__ == "__main__":
    main()
