#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: mlflow_restore
short_description: Check an MLflow backup, swap it into a stopped store, load PostgreSQL and S3, or undo it
version_added: 0.2.0
description:
  - Runs on the MLflow server host, on backups written by M(mlops.mlflow.mlflow_backup).
  - O(state=checked) only reads. It checks the backup's manifest, the sha256 of every file and
    C(PRAGMA integrity_check) of its databases, and, given O(known_revisions), whether the MLflow image
    that will serve the data knows the backup's schema revision.
  - O(state=checked) with O(live=true) goes on, in the same run, to write a backup that passed every check into the
    running MLflow, as O(state=live) does, when RV(live_problems) is empty and no migration is due. Otherwise it
    only reads, and RV(written) is V(null).
  - Every state that reads a backup (V(checked), V(restored), V(loaded)) first checks that it can trust the folder,
    and reads nothing through a link. The backup folder and every folder above it must belong to root and be
    writable by root only; a sticky folder such as C(/tmp) may be above it, because there nobody but root can
    rename or remove what root owns. The folder must hold exactly the files its C(manifest.json) lists, and folders
    that lead to them or lie in C(mlruns/), each belonging to root and writable by root only. Refused, each named
    with what to fix, are symbolic links, files with more than one hard link, named pipes, sockets and device files,
    entries the manifest does not list, and manifest names that are absolute or contain C(..).
  - Files are copied with C(O_NOFOLLOW), through directory descriptors.
  - O(state=restored) swaps the backup into the store. MLflow must be stopped. It never reads the live
    databases, so it works when they are damaged or empty. The store's C(db/) (the databases and their journal
    files) and C(mlruns/) are moved aside by rename into C(<store_dir>/kept-before-restore-<time>/). The backup is
    copied into a staging folder inside the store and renamed into place, its databases into C(db/). The entries
    are swapped, not the store directory itself, because it may be a mount point and it holds the Compose file.
  - Any failure during O(state=restored) puts the previous state back before the module fails, and the
    message says so.
  - O(state=live) writes a SQLite backup into the store a running MLflow serves, without stopping it, through
    SQLite's online backup API, and swaps the artifacts entry by entry inside C(mlruns/) (MLflow keeps its open
    files; they are bind mounts of its container). It keeps the previous data as O(state=restored) does, so
    O(state=reverted) undoes it, MLflow stopped. It refuses, changing nothing, for any reason RV(live_problems)
    gives; the stop-and-swap O(state=restored) restores those backups. A failure during it puts back what it
    had done (the artifacts' entries, and the pages of a database already written) before the module fails.
  - O(state=reverted) undoes a restore. The restored entries are removed and the ones in O(kept) are put
    back. Use it when MLflow does not come up on the restored data.
  - With PostgreSQL or S3, O(state=restored) moves the managed services' data directories (C(postgres/), C(s3/)) aside
    unread like the databases, and stages only what lives in files. Once the services run again on empty data,
    O(state=loaded) fills them. C(pg_restore) loads the dump into the empty database O(postgres), and every file of
    the backup's C(mlruns/) is uploaded to the bucket O(s3). Then every object is downloaded again and compared with
    the manifest's sha256.
  - O(state=set_aside) moves the store entries named in O(entries) into C(<store_dir>/<label>-<time>/) by rename
    (after a failed migration, say).
  - The store keeps its SQLite databases in C(db/), the folder the MLflow container mounts. O(state=db_dir) moves
    the databases and their journal files that a release before 0.5.0 kept at the top of the store into C(db/) by
    rename, and sets O(db_mode) and O(db_dir_mode). MLflow must be stopped. A name in both places, a link or a
    special file is refused before anything moves.
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
      - O(state=checked) runs in check mode too, since it only reads.
      - In check mode, O(state=restored) and O(state=loaded) fail on a backup they would refuse, with the same message.
      - In check mode, O(state=checked) with O(live=true) checks everything and writes nothing; it reports changed when
        it would write.
  idempotent:
    details:
      - O(state=restored) swaps the data in on every run.
options:
  state:
    description: What to do.
    type: str
    choices: [checked, restored, live, loaded, reverted, set_aside, db_dir]
    default: checked
  backup:
    description: The backup folder. Required for O(state=checked), O(state=restored) and O(state=loaded).
    type: path
  live:
    description:
      - With O(state=checked), write the backup into the running MLflow in the same run when it passed every check,
        RV(live_problems) is empty and RV(needs_upgrade) is not set. RV(written) says what was written.
      - Only the caller knows whether MLflow runs on the image and settings that will serve the data, and whether a
        cache of MLflow outlives the restore; set it only then.
    type: bool
    default: false
    version_added: 0.6.0
  allow_running:
    description:
      - With O(state=checked) and O(state=live), whether runs in flight that the backup does not have may end (their
        next write gets C(RESOURCE_DOES_NOT_EXIST)). By default they are a reason in RV(live_problems).
    type: bool
    default: false
    version_added: 0.6.0
  backend:
    description:
      - With O(state=checked), the configured backend, V(sqlite) or V(postgresql). A backup taken from another
        backend is refused (a SQLite store moves to PostgreSQL with C(playbooks/migrate.yml)).
    type: str
    version_added: 0.3.0
  entries:
    description: With O(state=set_aside), the store entries to move aside (such as V(postgres), V(s3), V(mlflow.db)).
    type: list
    elements: str
    version_added: 0.3.0
  label:
    description: With O(state=set_aside), the start of the folder name.
    type: str
    default: set-aside
    version_added: 0.3.0
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
  db_dir_mode:
    description:
      - Mode of the store's C(db/) folder, with O(state=restored) and O(state=db_dir). MLflow writes the journal
        of its databases there, as whatever user its image runs as.
    type: raw
    default: "0777"
    version_added: 0.5.0
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

- name: Fill the restarted, empty PostgreSQL and bucket from the backup
  mlops.mlflow.mlflow_restore:
    state: loaded
    store_dir: /opt/mlflow
    backup: /var/backups/mlflow/20261126T101500Z-manual
    postgres:
      image: mlops/postgres:17
      network: mlflow_default
      uri: postgresql://mlflow_owner@mlflow-postgres:5432/mlflow
      pgpass_file: /opt/mlflow/secrets/pgpass
    s3:
      endpoint: http://172.18.0.3:8333
      bucket: mlflow
      credentials_file: /opt/mlflow/secrets/aws_credentials

- name: Move the databases of a store of an earlier release into db/ (MLflow is stopped)
  mlops.mlflow.mlflow_restore:
    state: db_dir
    store_dir: /opt/mlflow

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
  sample:
    - has a changed mlflow.db (sha256 differs from the manifest)
    - "holds a symbolic link mlruns/1/r1/artifacts/x (to ../../../../secrets): a backup holds only files and folders;
      remove it"
counts:
  description:
    - With O(state=checked), the counts in the backup's manifest.
    - With O(state=live), the counts of what it wrote, in the same shape. MLflow keeps taking writes once the
      databases are written, so the store's own counts may have moved on by the time anyone reads them.
  returned: state is checked or live
  type: dict
schema_revision:
  description: The backup's tracking schema revision.
  returned: state is checked
  type: str
backend:
  description:
    - With O(state=checked), the store the backup was taken from, V(sqlite) or V(postgresql).
    - When it is not O(backend), RV(problems) says so, and a caller can tell how to move the data (a SQLite
      store moves to PostgreSQL with C(playbooks/migrate.yml)).
  returned: state is checked and the backup has a readable manifest
  type: str
  sample: sqlite
  version_added: 0.4.0
live:
  description: "With O(state=live), V(true): the backup went into the running MLflow."
  returned: state is live
  type: bool
  version_added: 0.6.0
written:
  description:
    - With O(state=checked) and O(live=true), what O(state=live) returns for the backup it wrote into the running
      MLflow (C(kept), C(moved_aside), C(restored), C(counts), C(auth_counts), C(live)); V(null) when it wrote nothing.
  returned: state is checked
  type: dict
  version_added: 0.6.0
live_problems:
  description:
    - With O(state=checked) on a SQLite store, why the backup cannot be restored into the running MLflow with
      O(state=live); empty when it can. Each is a phrase, such as a run in flight the backup lacks, a live database at
      another schema revision, in WAL mode or damaged.
    - What only the caller knows is not checked here (MLflow runs and answers; no cache of MLflow outlives the
      restore, such as the basic-auth app's credential cache or the workspaces' cache).
  returned: state is checked and the backup passed every check
  type: list
  elements: str
  version_added: 0.6.0
needs_upgrade:
  description: Whether the serving image must run C(mlflow db upgrade) on the restored database.
  returned: state is checked and known_revisions is given
  type: bool
kept:
  description: Where the previous data was moved; V(null) when the store held none.
  returned: state is restored, live or set_aside
  type: str
  sample: /opt/mlflow/kept-before-restore-20261126T101500Z
moved_aside:
  description: The store entries moved into RV(kept).
  returned: state is restored or live
  type: list
  elements: str
restored:
  description: The entries put into the store.
  returned: state is restored or live
  type: list
  elements: str
moved:
  description: With O(state=db_dir), the databases and journal files moved from the top of the store into C(db/).
  returned: state is db_dir
  type: list
  elements: str
  sample: [mlflow.db, basic_auth.db]
  version_added: 0.5.0
db:
  description: With O(state=loaded), the schema revision and counts of the loaded PostgreSQL database.
  returned: state is loaded and postgres is given
  type: dict
  version_added: 0.3.0
artifacts:
  description:
    - With O(state=loaded) and O(s3), the objects uploaded and found again (C(artifacts.source),
      C(artifacts.target)) and one sha256 over each side's keys and object sha256s (C(artifacts.source_sha256),
      C(artifacts.target_sha256)).
  returned: state is loaded and s3 is given
  type: dict
  version_added: 0.3.0
msg:
  description: What was done or found.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.mlops.mlflow.plugins.module_utils._backends import (  # noqa: E402
    BACKEND_ARGUMENT_SPEC,
    DATABASE_HELPERS,
    backends,
)
from ansible_collections.mlops.mlflow.plugins.module_utils._backup import verify_backup  # noqa: E402
from ansible_collections.mlops.mlflow.plugins.module_utils._live import live_problems, restore_live  # noqa: E402
from ansible_collections.mlops.mlflow.plugins.module_utils._store_read import (  # noqa: E402
    StoreError,
    top_level_databases,
)
from ansible_collections.mlops.mlflow.plugins.module_utils._swap import (  # noqa: E402
    adopt_db_dir,
    load_backup,
    put_back,
    refuse_untrusted,
    set_aside,
    swap_in,
)


def mode(module, name):
    value = str(module.params[name])
    try:
        return int(value, 8)
    except ValueError:
        module.fail_json(msg=f"{name} must be an octal mode such as '0666', got {value!r}.")


def write_live(module):
    """restore_live's result and message; a failure (after restore_live put back what it did) fails the module."""
    p = module.params
    try:
        result = restore_live(p["store_dir"], p["backup"], mode(module, "artifacts_mode"), artifacts_local=not p["s3"])
    except StoreError as error:
        module.fail_json(msg=f"{error}. MLflow was not stopped, and the backup {p['backup']} is unchanged.")
    result["msg"] = (
        f"Wrote {p['backup']} into the running MLflow's {p['store_dir']}; the previous data is in {result['kept']}."
    )
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(
                type="str",
                default="checked",
                choices=["checked", "restored", "live", "loaded", "reverted", "set_aside", "db_dir"],
            ),
            store_dir=dict(type="path", required=True),
            backup=dict(type="path"),
            kept=dict(type="path"),
            known_revisions=dict(type="list", elements="str"),
            head=dict(type="str"),
            image_version=dict(type="str"),
            db_mode=dict(type="raw", default="0666"),
            artifacts_mode=dict(type="raw", default="0777"),
            db_dir_mode=dict(type="raw", default="0777"),
            backend=dict(type="str"),
            entries=dict(type="list", elements="str"),
            label=dict(type="str", default="set-aside"),
            allow_running=dict(type="bool", default=False),
            live=dict(type="bool", default=False),
            **BACKEND_ARGUMENT_SPEC,
        ),
        required_if=[
            ("state", "checked", ["backup"]),
            ("state", "restored", ["backup"]),
            ("state", "live", ["backup"]),
            ("state", "loaded", ["backup"]),
            ("state", "reverted", ["kept"]),
            ("state", "set_aside", ["entries"]),
        ],
        supports_check_mode=True,
    )
    p = module.params
    known = ["sqlite", *(helper.NAME for helper in DATABASE_HELPERS.values())]
    if p["backend"] is not None and p["backend"] not in known:
        module.fail_json(
            msg=f"backend: {p['backend']} is none of the backends this collection knows, {', '.join(known)}."
        )
    db, s3 = backends(module, s3_client=p["state"] == "loaded")
    if p["state"] == "checked":
        result = verify_backup(
            p["backup"], p["known_revisions"], p["head"], p["image_version"], db=db, backend=p["backend"]
        )
        result["msg"] = (
            f"{p['backup']} passed every check." if result["ok"] else f"{p['backup']} {'; '.join(result['problems'])}."
        )
        result["written"] = None
        if result["ok"]:
            result["live_problems"] = (
                [f"the store's database is {db.NAME}, not SQLite"]
                if db
                else live_problems(p["store_dir"], p["backup"], p["allow_running"], artifacts_local=not p["s3"])
            )
        if not (p["live"] and result["ok"] and not result["live_problems"] and not result.get("needs_upgrade")):
            module.exit_json(changed=False, **result)
        if module.check_mode:
            result["msg"] = f"{p['backup']} passed every check; would write it into the running MLflow."
            module.exit_json(changed=True, **result)
        result["written"] = write_live(module)
        result["msg"] = result["written"]["msg"]
        module.exit_json(changed=True, **result)
    if p["state"] == "live":
        # Checked again here, at the moment of the change, in check mode too.
        try:
            refuse_untrusted(p["backup"])
        except StoreError as error:
            module.fail_json(msg=str(error))
        problems = [f"the store's database is {db.NAME}, not SQLite"] if db else []
        problems = problems or live_problems(
            p["store_dir"], p["backup"], p["allow_running"], artifacts_local=not p["s3"]
        )
        if problems:
            module.fail_json(
                msg=f"{p['backup']} cannot be restored into the running MLflow: {'; '.join(problems)}. "
                "Restore it with MLflow stopped (state=restored). Nothing was changed.",
                live_problems=problems,
            )
    if module.check_mode:
        if p["state"] in ("restored", "loaded"):
            # The same refusal as the real run, so a check run shows it.
            try:
                refuse_untrusted(p["backup"])
            except StoreError as error:
                module.fail_json(msg=str(error))
        what = {
            "restored": f"restore {p['backup']}",
            "live": f"restore {p['backup']} into the running MLflow",
            "loaded": f"load {p['backup']} into the database and the bucket",
            "reverted": f"put back {p['kept']}",
            "set_aside": f"move {', '.join(p['entries'] or [])} aside",
            "db_dir": f"move {', '.join(top_level_databases(p['store_dir'])) or 'nothing'} into db/",
        }[p["state"]]
        if p["state"] == "db_dir" and not top_level_databases(p["store_dir"]):
            module.exit_json(changed=False, moved=[], msg=f"The databases of {p['store_dir']} are in db/.")
        module.exit_json(changed=True, msg=f"Would {what} in {p['store_dir']}.")
    try:
        if p["state"] == "restored":
            result = swap_in(
                p["store_dir"],
                p["backup"],
                mode(module, "db_mode"),
                mode(module, "artifacts_mode"),
                artifacts_local=not p["s3"],
                db_dir_mode=mode(module, "db_dir_mode"),
            )
            result["msg"] = f"Swapped {p['backup']} into {p['store_dir']}; the previous data is in {result['kept']}."
        elif p["state"] == "live":
            result = write_live(module)
        elif p["state"] == "loaded":
            result = load_backup(p["backup"], db=db, s3=s3)
            loaded = [what for what, done in ((db and db.NAME, db), ("the bucket", s3)) if done]
            result["msg"] = f"Loaded {p['backup']} into {' and '.join(loaded) or 'nothing'}."
        elif p["state"] == "db_dir":
            moved = adopt_db_dir(p["store_dir"], mode(module, "db_mode"), mode(module, "db_dir_mode"))
            msg = f"Moved {', '.join(moved)} of {p['store_dir']} into db/." if moved else "Nothing to move."
            module.exit_json(changed=bool(moved), moved=moved, msg=msg)
        elif p["state"] == "set_aside":
            kept = set_aside(p["store_dir"], p["entries"], p["label"])
            result = {"kept": kept, "msg": f"Moved {', '.join(p['entries'])} of {p['store_dir']} into {kept}."}
            module.exit_json(changed=kept is not None, **result)
        else:
            result = put_back(p["store_dir"], p["kept"])
            result["msg"] = f"Put the data of {p['kept']} back into {p['store_dir']}."
    except StoreError as error:
        module.fail_json(msg=str(error))
    module.exit_json(changed=True, **result)


if __name__ == "__main__":
    main()
