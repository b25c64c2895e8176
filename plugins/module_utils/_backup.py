# -*- coding: utf-8 -*-
# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Note that this module util is **PRIVATE** to the collection. It can have breaking changes at any time.
# Do not use this from other collections or standalone plugins/modules!

"""Backups of an MLflow store: write one, check one, and decide which to keep.

A backup is a folder <UTC time>-<label> with the store's databases (SQLite's online backup) or a
PostgreSQL dump (mlflow.pgdump), the artifacts as files in mlruns/ (copied from the store, or
from the bucket, each file named by its key), the Compose file, and manifest.json: the counts,
the schema revision and the sha256 of every file. The manifest, checksums, anomaly marking and
retention are the same for every backend.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import shutil
import sqlite3

from ansible_collections.mlops.mlflow.plugins.module_utils._store_read import (
    ARTIFACTS,
    AUTH_DB,
    COMPOSE,
    DATABASES,
    DB,
    STACK,
    TRACKING_TABLES,
    StoreError,
    count_files,
    database_info,
    integrity,
    utc_stamp,
)
from ansible_collections.mlops.mlflow.plugins.module_utils.mlflow_postgres import DUMP, PostgresError
from ansible_collections.mlops.mlflow.plugins.module_utils.mlflow_s3 import S3Error, export_bucket

MANIFEST = "manifest.json"
FORMAT = 2
# Backup folders: <UTC timestamp>-<label>; name order is age order.
NAME_RE = re.compile(r"^[0-9]{8}T[0-9]{6}Z-[a-z][a-z0-9-]*\Z")
LABEL_RE = re.compile(r"^[a-z][a-z0-9-]{0,39}\Z")
# A drop of active runs by more than this share since the previous backup is an anomaly.
DROP_SHARE = 0.5


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


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
            "(mlflow_restore state=restored), which moves the damaged files aside without reading them."
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
    kind = result["backend"] = manifest.get("backend") or "sqlite"
    if backend and kind != backend:
        problems.append(f"was taken from a {kind} store, not from a {backend} one")
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
