#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: mlflow_restore
short_description: Check an MLflow backup, swap it into a stopped store, or put the previous data back
version_added: 0.2.0
description:
  - Runs on the MLflow server host, on backups written by M(mlops.mlflow.mlflow_backup).
  - O(state=checked) only reads. It checks the backup's manifest, the sha256 of every file and
    C(PRAGMA integrity_check) of its databases, and, given O(known_revisions), whether the MLflow image
    that will serve the data knows the backup's schema revision.
  - O(state=restored) swaps the backup into the store. MLflow must be stopped. It never reads the live
    databases, so it works when they are damaged or empty. The store's databases, their journal files and
    C(mlruns/) are moved aside by rename into C(<store_dir>/kept-before-restore-<time>/). The backup is
    copied into a staging folder inside the store and renamed into place. The entries are swapped, not
    the store directory itself, because it may be a mount point and it holds the Compose file.
  - Any failure during O(state=restored) puts the previous state back before the module fails, and the
    message says so.
  - O(state=reverted) undoes a restore. The restored entries are removed and the ones in O(kept) are put
    back. Use it when MLflow does not come up on the restored data.
author:
  - mlops.mlflow developers (@mlops)
attributes:
  check_mode:
    description: Can run in C(check_mode) and return changed status prediction without modifying target.
    support: full
    details:
      - O(state=checked) runs in check mode too, since it only reads.
  diff_mode:
    description:
      - Will return details on what has changed (or possibly needs changing in C(check_mode)), when in diff mode.
    support: none
  idempotent:
    description:
      - When run twice in a row outside check mode, with the same arguments, the second invocation indicates no change.
    support: none
    details:
      - O(state=restored) swaps the data in on every run.
options:
  state:
    description: What to do.
    type: str
    choices: [checked, restored, reverted]
    default: checked
  store_dir:
    description: The store directory.
    type: path
    required: true
  backup:
    description: The backup folder. Required for O(state=checked) and O(state=restored).
    type: path
  kept:
    description: The folder a restore moved the previous data to (RV(kept)). Required for O(state=reverted).
    type: path
  known_revisions:
    description:
      - Every tracking schema revision the serving MLflow image knows. With it, a backup of a newer schema is
        refused and RV(needs_upgrade) is set.
    type: list
    elements: str
  head:
    description: The newest schema revision the serving image knows.
    type: str
  image_version:
    description: Version of the serving MLflow, for messages.
    type: str
  db_mode:
    description: Mode of the restored databases.
    type: raw
    default: "0666"
  artifacts_mode:
    description: Mode of the restored C(mlruns/).
    type: raw
    default: "0777"
seealso:
  - module: mlops.mlflow.mlflow_backup
"""

EXAMPLES = r"""
- name: Check the backup before anything changes
  mlops.mlflow.mlflow_restore:
    store_dir: /opt/mlflow
    backup: /var/backups/mlflow/20261126T101500Z-manual
  register: check

- name: Swap it in (MLflow is stopped)
  mlops.mlflow.mlflow_restore:
    state: restored
    store_dir: /opt/mlflow
    backup: /var/backups/mlflow/20261126T101500Z-manual
  register: swap

- name: Put the previous data back when MLflow does not come up
  mlops.mlflow.mlflow_restore:
    state: reverted
    store_dir: /opt/mlflow
    kept: "{{ swap.kept }}"
"""

RETURN = r"""
ok:
  description: With O(state=checked), whether the backup passed every check.
  returned: state is checked
  type: bool
problems:
  description: With O(state=checked), what is wrong with the backup, each a phrase that follows its path.
  returned: state is checked
  type: list
  elements: str
  sample: ["has a changed mlflow.db (sha256 differs from the manifest)"]
counts:
  description: The counts in the backup's manifest.
  returned: state is checked
  type: dict
schema_revision:
  description: The backup's tracking schema revision.
  returned: state is checked
  type: str
needs_upgrade:
  description: Whether the serving image must run C(mlflow db upgrade) on the restored database.
  returned: state is checked and known_revisions is given
  type: bool
kept:
  description: Where the previous data was moved; V(null) when the store held none.
  returned: state is restored
  type: str
  sample: /opt/mlflow/kept-before-restore-20261126T101500Z
moved_aside:
  description: The store entries moved into RV(kept).
  returned: state is restored
  type: list
  elements: str
restored:
  description: The entries put into the store.
  returned: state is restored
  type: list
  elements: str
msg:
  description: What was done or found.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.mlops.mlflow.plugins.module_utils.mlflow_store import (  # noqa: E402
    StoreError,
    put_back,
    swap_in,
    verify_backup,
)


def mode(module, name):
    value = str(module.params[name])
    try:
        return int(value, 8)
    except ValueError:
        module.fail_json(msg=f"{name} must be an octal mode such as '0666', got {value!r}.")


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", default="checked", choices=["checked", "restored", "reverted"]),
            store_dir=dict(type="path", required=True),
            backup=dict(type="path"),
            kept=dict(type="path"),
            known_revisions=dict(type="list", elements="str"),
            head=dict(type="str"),
            image_version=dict(type="str"),
            db_mode=dict(type="raw", default="0666"),
            artifacts_mode=dict(type="raw", default="0777"),
        ),
        required_if=[
            ("state", "checked", ["backup"]),
            ("state", "restored", ["backup"]),
            ("state", "reverted", ["kept"]),
        ],
        supports_check_mode=True,
    )
    p = module.params
    if p["state"] == "checked":
        result = verify_backup(p["backup"], p["known_revisions"], p["head"], p["image_version"])
        result["msg"] = (
            f"{p['backup']} passed every check." if result["ok"] else f"{p['backup']} {'; '.join(result['problems'])}."
        )
        module.exit_json(changed=False, **result)
    if module.check_mode:
        what = f"restore {p['backup']}" if p["state"] == "restored" else f"put back {p['kept']}"
        module.exit_json(changed=True, msg=f"Would {what} in {p['store_dir']}.")
    try:
        if p["state"] == "restored":
            result = swap_in(p["store_dir"], p["backup"], mode(module, "db_mode"), mode(module, "artifacts_mode"))
            result["msg"] = f"Swapped {p['backup']} into {p['store_dir']}; the previous data is in {result['kept']}."
        else:
            result = put_back(p["store_dir"], p["kept"])
            result["msg"] = f"Put the data of {p['kept']} back into {p['store_dir']}."
    except StoreError as error:
        module.fail_json(msg=str(error))
    module.exit_json(changed=True, **result)


if __name__ == "__main__":
    main()
