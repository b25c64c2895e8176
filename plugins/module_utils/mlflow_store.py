# -*- coding: utf-8 -*-
# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""An MLflow store on the server host: read it, back it up, check a backup, swap one in.

A store directory holds the SQLite databases (mlflow.db, and basic_auth.db when MLflow's
basic-auth app runs), their journal files, the served artifacts in mlruns/ and the Compose
file. Everything here uses the standard library only (Python's sqlite3), so it runs on the
host with Ansible's Python, and the unit tests run it against temporary SQLite files.

The backend seam: with a `postgres` helper (mlflow_postgres.Postgres) the tracking and auth
tables live in PostgreSQL and a backup holds their dump (mlflow.pgdump); with an `s3` client
(mlflow_s3.S3 plus a bucket) the artifacts live in an object store and a backup holds them as
files in mlruns/, keyed like the objects. The manifest, checksums, anomaly marking, retention
and the swap-in restore are the same for every combination. The managed services keep their
data in <store>/postgres and <store>/s3, which a restore moves aside unread like the databases.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import shutil
import sqlite3

from ansible_collections.mlops.mlflow.plugins.module_utils.mlflow_postgres import DUMP, PostgresError
from ansible_collections.mlops.mlflow.plugins.module_utils.mlflow_s3 import (
    S3Error,
    bucket_digests,
    diff_digests,
    export_bucket,
    import_tree,
    tree_digest,
)

DB = "mlflow.db"
AUTH_DB = "basic_auth.db"
ARTIFACTS = "mlruns"
COMPOSE = "docker-compose.yml"
# The MLflow replicas' stack file in Swarm mode.
STACK = "docker-stack.yml"
MANIFEST = "manifest.json"
# The role writes this into every store it creates: only a directory that carries it may be purged.
MARKER = ".mlops-mlflow-store"
FORMAT = 2
# SQLite keeps these beside a database; a stale one beside another database corrupts it.
SIDE_FILES = ("-journal", "-wal", "-shm")
DATABASES = (DB, AUTH_DB)
# Data directories of the managed PostgreSQL and S3 services (Compose bind mounts).
SERVICE_DIRS = ("postgres", "s3")
# Backup folders: <UTC timestamp>-<label>; name order is age order.
NAME_RE = re.compile(r"^[0-9]{8}T[0-9]{6}Z-[a-z][a-z0-9-]*\Z")
LABEL_RE = re.compile(r"^[a-z][a-z0-9-]{0,39}\Z")
# Tables whose rows a backup counts; names come from here, never from input.
TRACKING_TABLES = ("experiments", "runs", "metrics", "params", "tags")
AUTH_TABLES = ("users", "experiment_permissions", "registered_model_permissions")
# A drop of active runs by more than this share since the previous backup is an anomaly.
DROP_SHARE = 0.5


class StoreError(Exception):
    """Something a user must fix; the message says what."""


def utc_stamp(now=None):
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return now.strftime("%Y%m%dT%H%M%SZ")


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


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


def database_info(path, auth=False):
    """What a database file holds, without changing it; a corrupt file is reported, not raised."""
    info = {"exists": os.path.isfile(path), "size": 0, "schema_revision": None, "counts": {}, "error": None}
    if not info["exists"]:
        return info
    info["size"] = os.path.getsize(path)
    if info["size"] == 0:
        return info
    try:
        conn = open_ro(path)
        try:
            revision, counts = (auth_facts if auth else tracking_facts)(conn)
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


def postgres_info(postgres):
    """The facts of a PostgreSQL database, in the shape of database_info (db, auth_db)."""
    try:
        facts = postgres.facts()
    except PostgresError as error:
        failed = {"exists": False, "size": None, "schema_revision": None, "counts": {}, "error": str(error)}
        return failed, dict(failed, error=None)
    db = {"exists": True, "size": None, "schema_revision": facts["schema_revision"], "counts": facts["counts"]}
    db.update(error=None, tables=facts["tables"])
    auth = facts["auth"] or {"schema_revision": None, "counts": {}}
    auth_db = {"exists": facts["auth"] is not None, "size": None, "error": None, **auth}
    return db, auth_db


def store_info(store_dir, postgres=None, s3=None):
    """Facts about a store directory, read in one pass.

    db and auth_db describe the configured backend: the SQLite files, or PostgreSQL when a
    postgres helper is given (then sqlite still describes mlflow.db, e.g. before a migration).
    artifacts counts the files in mlruns/, or the objects of the bucket with s3 = (client, bucket)."""
    info = {"exists": os.path.isdir(store_dir), "marker": os.path.isfile(os.path.join(store_dir, MARKER))}
    info["sqlite"] = database_info(os.path.join(store_dir, DB))
    info["backend"] = "postgresql" if postgres else "sqlite"
    if postgres:
        info["db"], info["auth_db"] = postgres_info(postgres)
    else:
        info["db"] = info["sqlite"]
        info["auth_db"] = database_info(os.path.join(store_dir, AUTH_DB), auth=True)
    info["artifacts_error"] = None
    if s3:
        client, bucket = s3
        try:
            info["artifacts"] = sum(1 for _object in client.list_objects(bucket)) if client.bucket_exists(bucket) else 0
        except S3Error as error:
            info["artifacts"], info["artifacts_error"] = None, str(error)
    else:
        info["artifacts"] = count_files(os.path.join(store_dir, ARTIFACTS))
    info["postgres_data"] = os.path.isfile(os.path.join(store_dir, "postgres", "PG_VERSION"))
    info["compose_image"] = mlflow_image(store_dir)
    info["compose_services"] = compose_services(os.path.join(store_dir, COMPOSE))
    return info


# --- backups -----------------------------------------------------------------------------------


def _snapshot(source, dest):
    """SQLite's online backup (consistent while MLflow writes), then integrity_check of the copy."""
    try:
        src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=60)
        dst = sqlite3.connect(dest)
        try:
            with dst:
                src.backup(dst)
            found = integrity(dst)
        finally:
            src.close()
            dst.close()
    except sqlite3.Error as error:
        raise StoreError(
            f"{source} cannot be copied: {error}. The live database is damaged; restore a backup "
            "(playbooks/restore.yml), which moves the damaged files aside without reading them."
        ) from error
    if found != ["ok"]:
        raise StoreError(f"integrity_check of the copy of {source} failed: {found[:3]}")


def _files(root):
    """{relative path: {sha256, size}} of every file below root."""
    files = {}
    for directory, _subdirs, names in os.walk(root):
        for name in sorted(names):
            path = os.path.join(directory, name)
            files[os.path.relpath(path, root)] = {"sha256": sha256(path), "size": os.path.getsize(path)}
    return files


def _make_private(root):
    """Copies keep their source's modes (mlflow.db is 0666); a backup is root's alone."""
    for directory, subdirs, names in os.walk(root):
        for name in subdirs:
            os.chmod(os.path.join(directory, name), 0o700)
        for name in names:
            if not os.path.islink(os.path.join(directory, name)):
                os.chmod(os.path.join(directory, name), 0o600)


def list_backups(backup_dir):
    """Finished backups (name order = age order), each {name, path, manifest} (manifest None if unreadable)."""
    if not os.path.isdir(backup_dir):
        return []
    found = []
    for name in sorted(os.listdir(backup_dir)):
        path = os.path.join(backup_dir, name)
        if NAME_RE.match(name) and os.path.isdir(path):
            found.append({"name": name, "path": path, "manifest": read_manifest(path)})
    return found


def read_manifest(path):
    try:
        with open(os.path.join(path, MANIFEST)) as handle:
            manifest = json.load(handle)
        return manifest if isinstance(manifest, dict) else None
    except (OSError, ValueError):
        return None


def _active_runs(manifest):
    counts = (manifest or {}).get("counts") or {}
    # Format 1 manifests count all runs only.
    return counts.get("runs_active", counts.get("runs", 0))


def anomaly(previous, counts):
    """Why a backup with these counts looks like an accident since the previous one, or None.

    Only active runs count: gc removes runs marked deleted, never active ones, so a gc in
    between explains no drop of them."""
    if previous is None:
        return None
    before, now = _active_runs(previous), counts.get("runs_active", 0)
    if before > 0 and now == 0:
        return f"active runs fell from {before} to 0 since the backup {previous.get('name')}"
    if before > 0 and now < before * (1 - DROP_SHARE):
        return f"active runs fell by more than half, from {before} to {now}, since the backup {previous.get('name')}"
    return None


def _snapshot_sqlite(store_dir, partial):
    """The SQLite databases into the backup; returns (schema revision, counts, auth facts or None)."""
    facts = {}
    for db in DATABASES:
        source = os.path.join(store_dir, db)
        if os.path.isfile(source) and os.path.getsize(source) > 0:
            _snapshot(source, os.path.join(partial, db))
            facts[db] = database_info(os.path.join(partial, db), auth=db == AUTH_DB)
        elif db == DB:
            # A store that never served: an empty database is its faithful copy.
            open(os.path.join(partial, DB), "wb").close()
            facts[db] = database_info(os.path.join(partial, DB))
    auth = None
    if AUTH_DB in facts:
        auth = {"schema_revision": facts[AUTH_DB]["schema_revision"], "counts": facts[AUTH_DB]["counts"]}
    return facts[DB]["schema_revision"], facts[DB]["counts"], auth


def _copy_artifacts(store_dir, partial, s3):
    dest = os.path.join(partial, ARTIFACTS)
    if s3:
        client, bucket = s3
        os.mkdir(dest)
        try:
            if client.bucket_exists(bucket):
                export_bucket(client, bucket, dest)
        except S3Error as error:
            raise StoreError(f"copying the artifacts out of the bucket {bucket} failed: {error}") from error
        return
    source = os.path.join(store_dir, ARTIFACTS)
    if os.path.isdir(source):
        shutil.copytree(source, dest, symlinks=True)
    else:
        os.mkdir(dest)


def create_backup(store_dir, backup_dir, label, mlflow_version=None, now=None, postgres=None, s3=None):
    """Back up the store into a new folder of backup_dir; return its manifest (without files) and path.

    Databases first (SQLite's online backup, or pg_dump of one snapshot), then the artifacts:
    every artifact a backed-up run refers to is in the backup. The folder is written as
    .<name>.partial, private from the first byte, and renamed only when complete."""
    if not LABEL_RE.match(label):
        raise StoreError(f"backup label {label!r} must be lower-case letters, digits and '-'")
    if not os.path.isdir(store_dir):
        raise StoreError(f"there is no store directory {store_dir} to back up")
    os.makedirs(backup_dir, mode=0o700, exist_ok=True)
    name = f"{utc_stamp(now)}-{label}"
    final = os.path.join(backup_dir, name)
    partial = os.path.join(backup_dir, f".{name}.partial")
    if os.path.exists(final):
        raise StoreError(f"backup folder {final} exists already; wait a second and run it again")
    shutil.rmtree(partial, ignore_errors=True)
    previous = next((b["manifest"] for b in reversed(list_backups(backup_dir)) if b["manifest"]), None)
    old_umask = os.umask(0o077)
    try:
        os.mkdir(partial, 0o700)
        if postgres:
            try:
                facts = postgres.dump(partial)
            except PostgresError as error:
                raise StoreError(str(error)) from error
            revision, db_counts, auth = facts["schema_revision"], facts["counts"], facts["auth"]
        else:
            revision, db_counts, auth = _snapshot_sqlite(store_dir, partial)
        _copy_artifacts(store_dir, partial, s3)
        for deployment in (COMPOSE, STACK):
            if os.path.isfile(os.path.join(store_dir, deployment)):
                shutil.copy2(os.path.join(store_dir, deployment), os.path.join(partial, deployment))
        _make_private(partial)
        counts = dict(db_counts or dict.fromkeys((*TRACKING_TABLES, "runs_active"), 0))
        counts["artifacts"] = count_files(os.path.join(partial, ARTIFACTS))
        files = _files(partial)
        manifest = {
            "format": FORMAT,
            "name": name,
            "created": (now or datetime.datetime.now(datetime.timezone.utc)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "label": label,
            "backend": "postgresql" if postgres else "sqlite",
            "artifacts_store": "s3" if s3 else "local",
            "mlflow_version": mlflow_version,
            "schema_revision": revision,
            "integrity_check": "pg_restore --list ok" if postgres else "ok",
            "counts": counts,
            "bytes": sum(entry["size"] for entry in files.values()),
            "anomaly": anomaly(previous, counts),
            "files": files,
        }
        if auth:
            manifest["auth"] = auth
        with open(os.path.join(partial, MANIFEST), "w") as handle:
            json.dump(manifest, handle, indent=1, sort_keys=True)
        os.rename(partial, final)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    finally:
        os.umask(old_umask)
    summary = {key: value for key, value in manifest.items() if key != "files"}
    summary["path"] = final
    return summary


def retention(backup_dir, keep, protect=()):
    """The backups to delete so that the newest `keep` remain, and why the others are kept.

    Never deleted: a protected path, a backup marked with an anomaly (it records the accident),
    and the newest backup holding data that is not marked (the last good copy before it)."""
    backups = list_backups(backup_dir)
    protected = {os.path.normpath(path) for path in protect}
    last_good = None
    for backup in reversed(backups):
        manifest = backup["manifest"]
        if manifest and not manifest.get("anomaly") and _active_runs(manifest) > 0:
            last_good = backup["path"]
            break
    delete, kept = [], {}
    for backup in backups[: max(len(backups) - keep, 0)]:
        manifest = backup["manifest"] or {}
        if backup["path"] in protected:
            kept[backup["name"]] = "protected"
        elif manifest.get("anomaly"):
            kept[backup["name"]] = f"marked: {manifest['anomaly']}"
        elif backup["path"] == last_good:
            kept[backup["name"]] = "the newest backup holding data"
        else:
            delete.append(backup["path"])
    return delete, kept


# --- checking and restoring ----------------------------------------------------------------------


def verify_backup(path, known_revisions=None, head=None, image_version=None, postgres=None, backend=None):
    """Check a backup before it is used; problems are returned, not raised, so callers can name the variable.

    backend: the configured backend (sqlite or postgresql), which the backup must have been taken from.
    postgres: a helper whose image reads the dump's table of contents (pg_restore --list)."""
    result = {"ok": False, "problems": [], "path": path, "image_version": image_version}
    problems = result["problems"]
    if not os.path.isfile(os.path.join(path, MANIFEST)):
        problems.append(f"does not exist or holds no {MANIFEST}")
        return result
    manifest = read_manifest(path)
    if manifest is None or not isinstance(manifest.get("files"), dict):
        problems.append(f"has an unreadable {MANIFEST}")
        return result
    result.update({key: value for key, value in manifest.items() if key != "files"})
    for name, entry in sorted(manifest["files"].items()):
        file_path = os.path.join(path, name)
        if not os.path.isfile(file_path):
            problems.append(f"misses {name}")
        elif sha256(file_path) != entry.get("sha256"):
            problems.append(f"has a changed {name} (sha256 differs from the manifest)")
    kind = manifest.get("backend") or "sqlite"
    if backend and kind != backend:
        problems.append(
            f"was taken from a {kind} store, and mlflow_server_backend is {backend}; "
            + ("move a SQLite store with playbooks/migrate.yml" if kind == "sqlite" else "restore it with that backend")
        )
    if kind == "sqlite" and DB not in manifest["files"]:
        problems.append(f"has no {DB} in its manifest")
    if kind == "postgresql" and DUMP not in manifest["files"]:
        problems.append(f"has no {DUMP} in its manifest")
    if problems:
        return result
    if kind == "postgresql" and postgres:
        problems += postgres.check_dump(path)
    for db in DATABASES:
        if db in manifest["files"] and manifest["files"][db]["size"] > 0:
            conn = sqlite3.connect(f"file:{os.path.join(path, db)}?mode=ro&immutable=1", uri=True)
            try:
                found = integrity(conn)
            except sqlite3.Error as error:
                found = [str(error)]
            finally:
                conn.close()
            if found != ["ok"]:
                problems.append(f"has a {db} that fails integrity_check: {found[:3]}")
    revision = manifest.get("schema_revision")
    if known_revisions is not None:
        known = revision is None or revision in known_revisions
        result["schema_known"] = known
        result["needs_upgrade"] = revision is not None and revision != head
        if not known:
            problems.append(
                f"holds schema revision {revision} written by MLflow {manifest.get('mlflow_version')}, "
                f"newer than MLflow {image_version} knows (its newest is {head})"
            )
    result["ok"] = not problems
    return result


def _entries(directory):
    """The store entries a restore replaces, as present in directory: databases, their side files, mlruns/,
    and the data directories of the managed PostgreSQL and S3."""
    names = [db + side for db in DATABASES for side in ("", *SIDE_FILES)] + [ARTIFACTS, *SERVICE_DIRS]
    return [name for name in names if os.path.lexists(os.path.join(directory, name))]


def _move(names, source, dest, done):
    for name in names:
        os.rename(os.path.join(source, name), os.path.join(dest, name))
        done.append(name)


def _move_back(names, source, dest):
    """Undo _move as far as possible; return what could not be moved back."""
    stuck = []
    for name in reversed(names):
        try:
            os.rename(os.path.join(source, name), os.path.join(dest, name))
        except OSError as error:
            stuck.append(f"{name}: {error}")
    return stuck


def swap_in(store_dir, backup_path, db_mode=0o666, artifacts_mode=0o777, now=None, artifacts_local=True):
    """Put a backup's data into the store; return the folder holding what was there before.

    What lives in PostgreSQL or S3 is not staged here: the store's postgres/ and s3/ are moved
    aside like the rest, the managed services start on empty data, and load_backup fills them.
    artifacts_local: whether mlruns/ is staged (False when the artifacts go to S3).

    Never reads the live databases: the store's entries (databases, journal files, mlruns/)
    are moved aside by rename into <store>/kept-before-restore-<time>/, the backup is copied
    into a staging folder in the store (same file system) and renamed into place. Entries
    are swapped inside the store dir, not the dir itself: it may be a mount point and it
    holds the Compose file. On any failure the previous state is put back before raising."""
    stamp = utc_stamp(now)
    staging = os.path.join(store_dir, f".restore-staging-{stamp}")
    kept = os.path.join(store_dir, f"kept-before-restore-{stamp}")
    os.makedirs(store_dir, mode=0o700, exist_ok=True)
    shutil.rmtree(staging, ignore_errors=True)
    try:
        os.mkdir(staging, 0o700)
        staged = []
        for name in (DB, AUTH_DB):
            if os.path.isfile(os.path.join(backup_path, name)):
                shutil.copy2(os.path.join(backup_path, name), os.path.join(staging, name))
                os.chmod(os.path.join(staging, name), db_mode)
                staged.append(name)
        if artifacts_local:
            shutil.copytree(os.path.join(backup_path, ARTIFACTS), os.path.join(staging, ARTIFACTS), symlinks=True)
            os.chmod(os.path.join(staging, ARTIFACTS), artifacts_mode)
            staged.append(ARTIFACTS)
    except BaseException as error:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(error, OSError):
            raise StoreError(f"copying {backup_path} into {store_dir} failed: {error}; nothing was changed") from error
        raise
    present = _entries(store_dir)
    moved_aside, swapped = [], []
    try:
        os.mkdir(kept, 0o700)
        _move(present, store_dir, kept, moved_aside)
        _move(staged, staging, store_dir, swapped)
    except BaseException as error:
        stuck = _move_back(swapped, store_dir, staging) + _move_back(moved_aside, kept, store_dir)
        shutil.rmtree(staging, ignore_errors=True)
        if not stuck:
            shutil.rmtree(kept, ignore_errors=True)
            raise StoreError(
                f"swapping {backup_path} into {store_dir} failed: {error}; the previous data was put back"
            ) from error
        raise StoreError(
            f"swapping {backup_path} into {store_dir} failed: {error}, and putting the previous data back failed "
            f"too ({'; '.join(stuck)}); what was moved aside is in {kept}"
        ) from error
    shutil.rmtree(staging, ignore_errors=True)
    if not moved_aside:
        os.rmdir(kept)
        kept = None
    return {"kept": kept, "moved_aside": moved_aside, "restored": swapped}


def put_back(store_dir, kept):
    """Undo a swap_in: the restored entries go, the kept-aside ones come back. Returns what went."""
    if not os.path.isdir(kept):
        raise StoreError(f"there is no kept-aside copy at {kept}")
    discard = os.path.join(store_dir, f".restore-discarded-{utc_stamp()}")
    os.mkdir(discard, 0o700)
    removed = []
    _move(_entries(store_dir), store_dir, discard, removed)
    back = []
    try:
        _move(_entries(kept), kept, store_dir, back)
    except OSError as error:
        raise StoreError(
            f"putting {kept} back into {store_dir} failed: {error}; the restored data is in {discard}"
        ) from error
    shutil.rmtree(discard)
    os.rmdir(kept)
    return {"removed": removed, "put_back": back}


def load_backup(backup_path, postgres=None, s3=None, scratch=None):
    """Fill an empty PostgreSQL database and/or bucket from a backup; check the bucket object by object.

    Returns {db: facts of the loaded database or None, artifacts: {source, target, source_sha256,
    target_sha256}}; raises StoreError when a step fails or the bucket differs from the backup."""
    manifest = read_manifest(backup_path) or {}
    result = {"db": None, "artifacts": None}
    if postgres:
        try:
            result["db"] = postgres.load(backup_path)
        except PostgresError as error:
            raise StoreError(str(error)) from error
    if s3:
        client, bucket = s3
        prefix = ARTIFACTS + "/"
        expected = {
            name[len(prefix) :]: entry["sha256"]
            for name, entry in (manifest.get("files") or {}).items()
            if name.startswith(prefix)
        }
        try:
            import_tree(client, bucket, os.path.join(backup_path, ARTIFACTS), expected)
            found = bucket_digests(
                client, bucket, scratch or os.path.join(backup_path, "..", f".scratch-{utc_stamp()}")
            )
        except S3Error as error:
            raise StoreError(f"copying the artifacts into the bucket {bucket} failed: {error}") from error
        result["artifacts"] = {
            "source": len(expected),
            "target": len(found),
            "source_sha256": tree_digest(expected),
            "target_sha256": tree_digest(found),
        }
        problems = diff_digests(expected, found)
        if problems:
            raise StoreError(f"the bucket {bucket} does not hold the backup's artifacts: {'; '.join(problems[:10])}")
    return result


def set_aside(store_dir, names, label, now=None):
    """Move the named store entries that exist into <store>/<label>-<time>/ by rename; return it, or None."""
    present = [name for name in names if os.path.lexists(os.path.join(store_dir, name))]
    if not present:
        return None
    kept = os.path.join(store_dir, f"{label}-{utc_stamp(now)}")
    os.mkdir(kept, 0o700)
    moved = []
    try:
        _move(present, store_dir, kept, moved)
    except OSError as error:
        stuck = _move_back(moved, kept, store_dir)
        raise StoreError(f"moving {', '.join(present)} aside into {kept} failed: {error}; stuck: {stuck}") from error
    return kept


# --- the modules' shared options -------------------------------------------------------------------

BACKEND_ARGUMENT_SPEC = {
    "postgres": {
        "type": "dict",
        "options": {
            "image": {"type": "str", "required": True},
            "network": {"type": "str", "default": "host"},
            "uri": {"type": "str", "required": True},
            "pgpass_file": {"type": "path", "required": True},
        },
    },
    "s3": {
        "type": "dict",
        "options": {
            "endpoint": {"type": "str", "required": True},
            "container": {"type": "str"},
            "network": {"type": "str"},
            "bucket": {"type": "str", "required": True},
            "region": {"type": "str", "default": "us-east-1"},
            "credentials_file": {"type": "path", "required": True},
        },
    },
}


def backends(module, s3_client=True):
    """(Postgres helper or None, (S3 client, bucket) or None) from a module's postgres and s3 options.

    s3_client=False skips the client (a swap-in only needs to know that the artifacts live in S3,
    and the S3 server is stopped then). Fails the module, naming the option, when the S3 keys
    cannot be read or the managed S3 container has no address."""
    from ansible_collections.mlops.mlflow.plugins.module_utils.mlflow_postgres import Postgres
    from ansible_collections.mlops.mlflow.plugins.module_utils.mlflow_s3 import S3

    postgres = s3 = None
    if module.params.get("postgres"):
        postgres = Postgres(
            module.params["postgres"],
            lambda argv, data=None: module.run_command(argv, data=data, binary_data=True),
        )
    if module.params.get("s3") and s3_client:
        spec = dict(module.params["s3"])
        if spec.get("container"):
            spec["endpoint"] = container_endpoint(module, spec)
        try:
            s3 = (S3.from_spec(spec), spec["bucket"])
        except S3Error as error:
            module.fail_json(msg=f"s3.credentials_file: {error}.")
    return postgres, s3


def container_endpoint(module, spec):
    """The endpoint with its host replaced by the address of s3.container on s3.network: the host
    reaches a managed S3 that publishes no port there."""
    from urllib.parse import urlsplit, urlunsplit

    rc, out, err = module.run_command(
        ["docker", "inspect", "-f", "{{json .NetworkSettings.Networks}}", spec["container"]]
    )
    networks = {}
    if rc == 0:
        try:
            networks = json.loads(out)
        except ValueError:
            networks = {}
    address = (networks.get(spec.get("network") or "") or {}).get("IPAddress")
    if not address:
        module.fail_json(
            msg=f"s3.container {spec['container']} has no address on the network {spec.get('network')} "
            f"(is it running?): {(err or out).strip()[-300:]}"
        )
    url = urlsplit(spec["endpoint"])
    return urlunsplit((url.scheme, f"{address}:{url.port or 80}", url.path, "", ""))
