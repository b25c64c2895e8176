# -*- coding: utf-8 -*-
# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Note that this module util is **PRIVATE** to the collection. It can have breaking changes at any time.
# Do not use this from other collections or standalone plugins/modules!

"""Restoring a SQLite backup into the store a running MLflow serves, without stopping it.

SQLite's online backup API writes the backup's pages into the live mlflow.db (and basic_auth.db)
through a connection, in one step under the database's write lock, so every worker of the running
server reads the restored data on its next transaction. MLflow keeps its open files: db/ and mlruns/
are bind mounts of its container, and a database replaced by rename would leave it writing to the old
file. The artifacts are swapped entry by entry inside mlruns/ for the same reason.

What was there before is kept in <store>/kept-before-restore-<time>/ in the same layout as
_swap.swap_in keeps it (db/ with the databases, mlruns/), so one way back (_swap.put_back, MLflow
stopped) undoes either restore.

live_problems says why a backup cannot be restored this way; any reason sends the restore the
stop-and-swap way (_swap.swap_in)."""

from __future__ import annotations

import os
import shutil
import sqlite3
from contextlib import closing

from ansible_collections.mlops.mlflow.plugins.module_utils._backup import copy_pages, copy_tree
from ansible_collections.mlops.mlflow.plugins.module_utils._store_read import (
    ARTIFACTS,
    AUTH_DB,
    DATABASES,
    DB,
    DB_DIR,
    StoreError,
    auth_facts,
    count_files,
    database_info,
    integrity,
    open_ro,
    tracking_facts,
    utc_stamp,
)
from ansible_collections.mlops.mlflow.plugins.module_utils._swap import refuse_untrusted

# The most run ids a refusal names.
SHOWN_RUNS = 5
# The AI Gateway's tables: MLflow caches what it read of them (its secrets for 60 s), so a restore
# that changes them is not seen at once; only a restart clears that cache.
GATEWAY_TABLES = ("secrets", "endpoints", "model_definitions", "endpoint_model_mappings", "endpoint_bindings")
# Jobs not finished (PENDING, RUNNING, NEEDS_RECOVERY in mlflow.entities._job_status): MLflow's job
# runner queues a database's unfinished jobs again only when it starts.
UNFINISHED_JOBS = (0, 1, 6)


def _revision(path, name):
    with closing(open_ro(path)) as conn:
        return (auth_facts(conn) if name == AUTH_DB else tracking_facts(conn))[0]


def _running(path):
    """The runs in flight: run id -> start time."""
    with closing(open_ro(path)) as conn:
        return dict(conn.execute("SELECT run_uuid, start_time FROM runs WHERE status = 'RUNNING'"))


def _tables(conn):
    return {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _gateway_rows(path):
    """The AI Gateway's rows, table by table, in a comparable form."""
    with closing(open_ro(path)) as conn:
        present = _tables(conn)
        return {
            table: sorted(map(repr, conn.execute(f"SELECT * FROM {table}")))  # noqa: S608 (fixed table names)
            for table in GATEWAY_TABLES
            if table in present
        }


def _unfinished_jobs(path):
    with closing(open_ro(path)) as conn:
        if "jobs" not in _tables(conn):
            return 0
        return conn.execute("SELECT count(*) FROM jobs WHERE status IN (?, ?, ?)", UNFINISHED_JOBS).fetchone()[0]


def _live_db_problems(live, backed, name):
    """Why the live database cannot take the backup's pages: damaged, in WAL mode, or at another revision."""
    try:
        with closing(open_ro(live)) as conn:
            found = integrity(conn)
            journal = conn.execute("PRAGMA journal_mode").fetchone()[0]
        if found != ["ok"]:
            return [f"the live {name} fails integrity_check ({'; '.join(found[:3])})"]
        if journal.lower() == "wal":
            return [f"the live {name} is in WAL mode, where other connections may keep reading the old pages"]
        live_revision, backup_revision = _revision(live, name), _revision(backed, name)
    except sqlite3.Error as error:
        return [f"the live {name} cannot be read ({error})"]
    if live_revision != backup_revision:
        return [f"the live {name} is at schema revision {live_revision}, the backup's at {backup_revision}"]
    return []


def live_problems(store_dir, backup_path, allow_running=False, artifacts_local=True):
    """Why backup_path cannot be restored into the live store: a list, empty when it can.

    Checked here: both databases of the backup have a healthy live counterpart in rollback-journal mode at
    the same schema revision; the live store has no users database the backup lacks; (unless allow_running)
    no run is in flight that the backup does not have (it would end with RESOURCE_DOES_NOT_EXIST); the AI
    Gateway's tables are the backup's (MLflow caches them); and the backup has no unfinished job.
    What the caller knows better (MLflow runs and answers, no cache outlives the restore) is the caller's."""
    problems = []
    if artifacts_local:
        for where, path in (("the live store", store_dir), ("the backup", backup_path)):
            if not os.path.isdir(os.path.join(path, ARTIFACTS)) or os.path.islink(os.path.join(path, ARTIFACTS)):
                problems.append(f"{where} has no {ARTIFACTS}/ folder")
    for name in DATABASES:
        live, backed = os.path.join(store_dir, DB_DIR, name), os.path.join(backup_path, name)
        has_live, has_backup = os.path.isfile(live) and os.path.getsize(live) > 0, os.path.isfile(backed)
        if not has_backup:
            if has_live and name == AUTH_DB:
                problems.append(f"the live store has a {name} and the backup none")
            continue
        if not has_live:
            problems.append(f"the live store has no {name} to write the backup's into")
            continue
        problems += _live_db_problems(live, backed, name)
    if problems:
        return problems
    live_db, backup_db = os.path.join(store_dir, DB_DIR, DB), os.path.join(backup_path, DB)
    try:
        if allow_running:
            in_flight = []
        else:
            live_runs, backup_runs = _running(live_db), _running(backup_db)
            # Newest first: the runs somebody just started are the ones they will look for.
            in_flight = sorted(set(live_runs) - set(backup_runs), key=lambda run: (-(live_runs[run] or 0), run))
        gateway_differs = _gateway_rows(live_db) != _gateway_rows(backup_db)
        jobs = _unfinished_jobs(backup_db)
    except sqlite3.Error as error:
        return [f"the runs, jobs or AI Gateway tables of {DB} cannot be read ({error})"]
    if in_flight:
        shown = ", ".join(in_flight[:SHOWN_RUNS]) + (", ..." if len(in_flight) > SHOWN_RUNS else "")
        problems.append(f"{len(in_flight)} run(s) in flight are not in the backup ({shown})")
    if gateway_differs:
        problems.append("the AI Gateway's endpoints or secrets differ from the backup's (MLflow caches them)")
    if jobs:
        problems.append(f"the backup has {jobs} unfinished job(s), which MLflow queues again only when it starts")
    return problems


def _pages(source, dest):
    """Copy a database's pages into dest (which keeps its file and inode), checked."""
    found = copy_pages(source, dest)
    if found != ["ok"]:
        raise StoreError(f"integrity_check of {dest} failed after the restore: {found[:3]}")


def restore_live(store_dir, backup_path, artifacts_mode=0o777, now=None, artifacts_local=True):
    """Restore a backup into the live store; return {kept, moved_aside, restored} as _swap.swap_in does,
    and counts: what it wrote, in a backup manifest's shape (the store's own counts move on with MLflow's
    writes as soon as the databases are written).

    Order: keep copies of the live databases; stage the backup's artifacts in the store (same file system);
    move the live artifacts' entries aside and the staged ones in; write the backup's pages into the live
    databases. Any failure puts back what was done (the artifacts' entries, and the pages of a database
    already written, from the copy kept first), keeps nothing and raises StoreError."""
    refuse_untrusted(backup_path)
    stamp = utc_stamp(now)
    kept = os.path.join(store_dir, f"kept-before-restore-{stamp}")
    staging = os.path.join(store_dir, f".restore-staging-{stamp}")
    databases = [name for name in DATABASES if os.path.isfile(os.path.join(backup_path, name))]
    live_artifacts = os.path.join(store_dir, ARTIFACTS)
    moved, staged, written, artifacts = [], [], [], 0
    written_db = database_info(os.path.join(backup_path, DB))
    written_auth = database_info(os.path.join(backup_path, AUTH_DB), auth=True)
    if written_db["error"]:
        raise StoreError(f"{backup_path}: {written_db['error']}; nothing was changed")
    try:
        os.mkdir(kept, 0o700)
        os.mkdir(os.path.join(kept, DB_DIR), 0o700)
        for name in databases:
            _pages(os.path.join(store_dir, DB_DIR, name), os.path.join(kept, DB_DIR, name))
        if artifacts_local:
            copy_tree(os.path.join(backup_path, ARTIFACTS), staging)
            artifacts = count_files(staging)
            os.mkdir(os.path.join(kept, ARTIFACTS), 0o700)
            for entry in sorted(os.listdir(live_artifacts)):
                os.rename(os.path.join(live_artifacts, entry), os.path.join(kept, ARTIFACTS, entry))
                moved.append(entry)
            for entry in sorted(os.listdir(staging)):
                os.rename(os.path.join(staging, entry), os.path.join(live_artifacts, entry))
                staged.append(entry)
            os.chmod(live_artifacts, artifacts_mode)
        for name in databases:
            written.append(name)
            _pages(os.path.join(backup_path, name), os.path.join(store_dir, DB_DIR, name))
    except (OSError, sqlite3.Error, StoreError) as error:
        _undo(store_dir, kept, staged, moved, written)
        shutil.rmtree(staging, ignore_errors=True)
        raise StoreError(
            f"restoring {backup_path} into the live {store_dir} failed: {error}; what was there before was put back"
        ) from error
    shutil.rmtree(staging, ignore_errors=True)
    return {
        "kept": kept,
        "moved_aside": [DB_DIR, ARTIFACTS] if artifacts_local else [DB_DIR],
        "restored": databases,
        "counts": {**written_db["counts"], "artifacts": artifacts},
        # The basic-auth database's rows as written (none when the backup has none).
        "auth_counts": written_auth["counts"] if AUTH_DB in databases else None,
        "live": True,
    }


def _undo(store_dir, kept, staged, moved, written):
    """Put back what restore_live did before it failed, then drop the copies it kept.

    A failure here raises with the kept folder's name and keeps it: the data is then in its copy."""
    live_artifacts = os.path.join(store_dir, ARTIFACTS)
    try:
        for name in reversed(written):
            _pages(os.path.join(kept, DB_DIR, name), os.path.join(store_dir, DB_DIR, name))
        for entry in reversed(staged):
            shutil.rmtree(os.path.join(live_artifacts, entry))
        for entry in reversed(moved):
            os.rename(os.path.join(kept, ARTIFACTS, entry), os.path.join(live_artifacts, entry))
    except (OSError, sqlite3.Error, StoreError) as error:
        raise StoreError(
            f"putting back the live {store_dir} failed too ({error}): what was there before is in {kept} "
            "(mlflow_restore state=reverted puts it back, MLflow stopped)"
        ) from error
    shutil.rmtree(kept, ignore_errors=True)
