# -*- coding: utf-8 -*-
# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Note that this module util is **PRIVATE** to the collection. It can have breaking changes at any time.
# Do not use this from other collections or standalone plugins/modules!

"""An MLflow store on the server host: what its directory holds, and reading it without changing it.

A store directory holds the SQLite databases in db/ (mlflow.db, and basic_auth.db when
MLflow's basic-auth app runs) with their journal files, the served artifacts in mlruns/ and
the Compose file. Stores of releases before 0.5.0 keep the databases at the top (db_path).
Everything here uses the standard library only (Python's sqlite3), so it runs on the host
with Ansible's Python, and the unit tests run it against temporary SQLite files.

The backend seam: with a database helper `db` (one of _backends.DATABASE_HELPERS, such as
mlflow_postgres.Postgres) the tracking and auth tables live in that database; with an `s3` client
(mlflow_s3.S3 plus a bucket) the artifacts live in an object store. The managed services keep their
data in their folders of the store (the helpers' DATA_DIR, and s3/).
The names here (files, tables, StoreError, utc_stamp) are shared by _backup.py (backups and
their checks) and _swap.py (restores); _backends.py turns a module's options into the helpers.
"""

from __future__ import annotations

import datetime
import os
import re
import sqlite3

from ansible_collections.mlops.mlflow.plugins.module_utils._backends import DATABASE_HELPERS
from ansible_collections.mlops.mlflow.plugins.module_utils._tables import AUTH_TABLES, TRACKING_TABLES
from ansible_collections.mlops.mlflow.plugins.module_utils.mlflow_s3 import S3Error

DB = "mlflow.db"
AUTH_DB = "basic_auth.db"
ARTIFACTS = "mlruns"
COMPOSE = "docker-compose.yml"
# The MLflow replicas' stack file in Swarm mode.
STACK = "docker-stack.yml"
# The role writes this into every store it creates: only a directory that carries it may be purged.
MARKER = ".mlops-mlflow-store"
# SQLite keeps these beside a database; a stale one beside another database corrupts it.
SIDE_FILES = ("-journal", "-wal", "-shm")
DATABASES = (DB, AUTH_DB)
# The databases' folder: the MLflow container mounts it and mlruns/, never the whole store.
DB_DIR = "db"
# Data directories of the managed services, the databases' and S3's (Compose bind mounts).
SERVICE_DIRS = (*(helper.DATA_DIR for helper in DATABASE_HELPERS.values()), "s3")


class StoreError(Exception):
    """Something a user must fix; the message says what."""


def utc_stamp(now=None):
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return now.strftime("%Y%m%dT%H%M%SZ")


def db_path(store_dir, name):
    """Where the store keeps the database name (or its side file): in db/, or at the top of a store of
    a release before 0.5.0 that the role has not moved yet (mlflow_restore state=db_dir moves it)."""
    path = os.path.join(store_dir, DB_DIR, name)
    top = os.path.join(store_dir, name)
    if not os.path.lexists(path) and os.path.lexists(top):
        return top
    return path


def top_level_databases(store_dir):
    """The databases and side files at the top of a store of a release before 0.5.0."""
    names = [db + side for db in DATABASES for side in ("", *SIDE_FILES)]
    return [name for name in names if os.path.lexists(os.path.join(store_dir, name))]


def _table_exists(conn, name):
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (name,)).fetchone() is not None


def _count(conn, table, where=""):
    if not _table_exists(conn, table):
        return 0
    return conn.execute(f"SELECT count(*) FROM {table} {where}").fetchone()[0]  # noqa: S608 - names from constants


def _revision(conn, table):
    if not _table_exists(conn, table):
        return None
    row = conn.execute(f"SELECT version_num FROM {table}").fetchone()  # noqa: S608 - names from constants
    return row[0] if row else None


def tracking_facts(conn):
    """Schema revision and row counts of an MLflow tracking database (None/0 when never served)."""
    counts = {table: _count(conn, table) for table in TRACKING_TABLES}
    # Runs gc can never remove: it only removes runs marked deleted.
    counts["runs_active"] = _count(conn, "runs", "WHERE lifecycle_stage = 'active'")
    return _revision(conn, "alembic_version"), counts


def auth_facts(conn):
    """Schema revision and counts of MLflow's basic-auth database. MLflow 3 keeps its revision in
    alembic_version_auth; MLflow 2 kept it in the plain alembic_version table of that database."""
    revision = _revision(conn, "alembic_version_auth") or _revision(conn, "alembic_version")
    return revision, {table: _count(conn, table) for table in AUTH_TABLES}


def open_ro(path):
    """A read-only connection that never creates the file and never writes a journal."""
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=60)


def integrity(conn):
    return [row[0] for row in conn.execute("PRAGMA integrity_check").fetchall()]


def count_files(root):
    return sum(len(files) for _directory, _subdirs, files in os.walk(root)) if os.path.isdir(root) else 0


# What MLflow 3 keeps per workspace, and checks at its start without workspaces: it refuses to
# start then while any of them lies outside the workspace default.
WORKSPACE_TABLES = ("experiments", "registered_models", "webhooks")


def workspaces_in_use(conn):
    """The workspaces that hold experiments, registered models or webhooks, sorted ([] before
    MLflow 3's workspace column)."""
    found = set()
    for table in WORKSPACE_TABLES:
        if _table_exists(conn, table) and "workspace" in [
            row[1] for row in conn.execute(f"PRAGMA table_info({table})")
        ]:
            found.update(row[0] for row in conn.execute(f"SELECT DISTINCT workspace FROM {table}"))  # noqa: S608 - names from constants
    return sorted(found)


def database_info(path, auth=False):
    """What a database file holds, without changing it; a corrupt file is reported, not raised.
    A tracking database's also says which workspaces hold experiments."""
    info = {"exists": os.path.isfile(path), "size": 0, "schema_revision": None, "counts": {}, "error": None}
    if not auth:
        info["workspaces"] = []
    if not info["exists"]:
        return info
    info["size"] = os.path.getsize(path)
    if info["size"] == 0:
        return info
    try:
        conn = open_ro(path)
        try:
            revision, counts = (auth_facts if auth else tracking_facts)(conn)
            if not auth:
                info["workspaces"] = workspaces_in_use(conn)
        finally:
            conn.close()
    except sqlite3.Error as error:
        info["error"] = f"{os.path.basename(path)} cannot be read: {error}"
        return info
    info.update(schema_revision=revision, counts=counts)
    return info


def compose_image(path, service="mlflow-server"):
    """The image the MLflow service of a Compose or stack file on disk runs, or None: the image that wrote the data.

    A file without that service name (written before the managed services existed) gives its first image."""
    first = found = None
    inside = False
    try:
        with open(path) as handle:
            for line in handle:
                if re.match(r"^  [A-Za-z0-9._-]+:\s*$", line):
                    inside = line.strip() == f"{service}:"
                match = re.match(r"^\s+image:\s*\"?([^\s\"]+)\"?\s*$", line)
                if match:
                    first = first or match.group(1)
                    if inside and found is None:
                        found = match.group(1)
    except OSError:
        return None
    return found or first


def mlflow_image(store_dir):
    """The MLflow image of the stack file (Swarm) or else the Compose file in the store."""
    return compose_image(os.path.join(store_dir, STACK)) or compose_image(os.path.join(store_dir, COMPOSE))


def compose_services(path):
    """The service names of the Compose file on disk ([] when there is none)."""
    services, inside = [], False
    try:
        with open(path) as handle:
            for line in handle:
                if re.match(r"^services:\s*$", line):
                    inside = True
                elif inside and re.match(r"^\S", line):
                    inside = False
                elif inside:
                    match = re.match(r"^  ([A-Za-z0-9._-]+):\s*$", line)
                    if match:
                        services.append(match.group(1))
    except OSError:
        return []
    return services


def db_service_info(db):
    """The facts of a database service (a helper's), in the shape of database_info (db, auth_db)."""
    try:
        facts = db.facts()
    except db.Error as error:
        failed = {"exists": False, "size": None, "schema_revision": None, "counts": {}, "error": str(error)}
        return failed, dict(failed, error=None)
    db = {"exists": True, "size": None, "schema_revision": facts["schema_revision"], "counts": facts["counts"]}
    # The workspaces are read from SQLite files only.
    db.update(error=None, tables=facts["tables"], workspaces=None)
    auth = facts["auth"] or {"schema_revision": None, "counts": {}}
    auth_db = {"exists": facts["auth"] is not None, "size": None, "error": None, **auth}
    return db, auth_db


def store_info(store_dir, db=None, s3=None):
    """Facts about a store directory, read in one pass.

    db and auth_db describe the configured backend: the SQLite files, or the database of a helper
    db (then sqlite still describes mlflow.db, e.g. before a migration to PostgreSQL).
    artifacts counts the files in mlruns/, or the objects of the bucket with s3 = (client, bucket)."""
    info = {"exists": os.path.isdir(store_dir), "marker": os.path.isfile(os.path.join(store_dir, MARKER))}
    info["sqlite"] = database_info(db_path(store_dir, DB))
    info["backend"] = db.NAME if db else "sqlite"
    if db:
        info["db"], info["auth_db"] = db_service_info(db)
    else:
        info["db"] = info["sqlite"]
        info["auth_db"] = database_info(db_path(store_dir, AUTH_DB), auth=True)
    info["artifacts_error"] = None
    if s3:
        client, bucket = s3
        try:
            info["artifacts"] = sum(1 for _object in client.list_objects(bucket)) if client.bucket_exists(bucket) else 0
        except S3Error as error:
            info["artifacts"], info["artifacts_error"] = None, str(error)
    else:
        info["artifacts"] = count_files(os.path.join(store_dir, ARTIFACTS))
    info["database_data"] = [helper.DATA_DIR for helper in DATABASE_HELPERS.values() if helper.has_data(store_dir)]
    info["compose_image"] = mlflow_image(store_dir)
    info["compose_services"] = compose_services(os.path.join(store_dir, COMPOSE))
    return info
