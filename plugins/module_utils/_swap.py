# -*- coding: utf-8 -*-
# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Note that this module util is **PRIVATE** to the collection. It can have breaking changes at any time.
# Do not use this from other collections or standalone plugins/modules!

"""Restoring an MLflow store: swap a backup into a stopped store, load PostgreSQL and S3, or undo it.

Nothing here reads the live databases: the store's entries are moved aside by rename, so a
damaged store is restored like a healthy one. What lives in PostgreSQL or S3 is not staged in
the store: the managed services start on empty data, and load_backup fills them.

Both refuse a backup that trust_problems (in _backup.py) does not pass, before the first copy,
and copy without following links.
"""

from __future__ import annotations

import os
import shutil

from ansible_collections.mlops.mlflow.plugins.module_utils._backup import (
    copy_file,
    copy_tree,
    read_manifest,
    trust_problems,
)
from ansible_collections.mlops.mlflow.plugins.module_utils._store_read import (
    ARTIFACTS,
    AUTH_DB,
    DATABASES,
    DB,
    DB_DIR,
    SERVICE_DIRS,
    StoreError,
    top_level_databases,
    utc_stamp,
)
from ansible_collections.mlops.mlflow.plugins.module_utils.mlflow_s3 import (
    S3Error,
    bucket_digests,
    diff_digests,
    import_tree,
    tree_digest,
)


def _entries(directory):
    """The store entries a restore replaces, as present in directory: db/ (and the databases and side files
    at the top of a store of an earlier release), mlruns/, and the data directories of the managed PostgreSQL
    and S3."""
    names = [DB_DIR, ARTIFACTS, *SERVICE_DIRS]
    return top_level_databases(directory) + [name for name in names if os.path.lexists(os.path.join(directory, name))]


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


def refuse_untrusted(backup_path):
    """Raise StoreError, naming every entry and why, when a restore must not trust the backup folder."""
    problems = trust_problems(backup_path)
    if problems:
        raise StoreError(f"{backup_path} cannot be trusted: it {'; it '.join(problems)}. Nothing was changed.")


def swap_in(
    store_dir, backup_path, db_mode=0o666, artifacts_mode=0o777, now=None, artifacts_local=True, db_dir_mode=0o777
):
    """Put a backup's data into the store; return the folder holding what was there before.

    What lives in PostgreSQL or S3 is not staged here: the store's postgres/ and s3/ are moved
    aside like the rest, the managed services start on empty data, and load_backup fills them.
    artifacts_local: whether mlruns/ is staged (False when the artifacts go to S3).

    Never reads the live databases: the store's entries (db/ with the databases and their journal files, mlruns/)
    are moved aside by rename into <store>/kept-before-restore-<time>/, the backup is copied
    into a staging folder in the store (same file system) and renamed into place. Entries
    are swapped inside the store dir, not the dir itself: it may be a mount point and it
    holds the Compose file. On any failure the previous state is put back before raising."""
    refuse_untrusted(backup_path)
    stamp = utc_stamp(now)
    staging = os.path.join(store_dir, f".restore-staging-{stamp}")
    kept = os.path.join(store_dir, f"kept-before-restore-{stamp}")
    os.makedirs(store_dir, mode=0o700, exist_ok=True)
    shutil.rmtree(staging, ignore_errors=True)
    try:
        os.mkdir(staging, 0o700)
        staged = []
        databases = [name for name in (DB, AUTH_DB) if os.path.isfile(os.path.join(backup_path, name))]
        if databases:
            # A backup keeps the databases at its top; the store, in db/.
            os.mkdir(os.path.join(staging, DB_DIR))
            os.chmod(os.path.join(staging, DB_DIR), db_dir_mode)
            staged.append(DB_DIR)
        for name in databases:
            copy_file(os.path.join(backup_path, name), os.path.join(staging, DB_DIR, name))
            os.chmod(os.path.join(staging, DB_DIR, name), db_mode)
        if artifacts_local:
            copy_tree(os.path.join(backup_path, ARTIFACTS), os.path.join(staging, ARTIFACTS))
            os.chmod(os.path.join(staging, ARTIFACTS), artifacts_mode)
            staged.append(ARTIFACTS)
    except BaseException as error:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(error, StoreError):
            raise StoreError(f"copying {backup_path} into {store_dir} failed: {error}; nothing was changed") from error
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


def load_backup(backup_path, db=None, s3=None, scratch=None):
    """Fill an empty database (a helper's, such as PostgreSQL) and/or bucket from a backup; check the bucket
    object by object.

    Returns {db: facts of the loaded database or None, artifacts: {source, target, source_sha256,
    target_sha256}}; raises StoreError when a step fails or the bucket differs from the backup."""
    refuse_untrusted(backup_path)
    manifest = read_manifest(backup_path) or {}
    result = {"db": None, "artifacts": None}
    if db:
        try:
            result["db"] = db.load(backup_path)
        except db.Error as error:
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


def adopt_db_dir(store_dir, db_mode=0o666, db_dir_mode=0o777):
    """Move the databases and side files at the top of a store of a release before 0.5.0 into db/ by rename.

    MLflow must be stopped. Returns the names moved ([] when there were none). A name found in both places
    is refused, and so is anything but a plain file, or a db/ that is not a plain folder; a run cut off
    half way finishes the move the next time."""
    names = top_level_databases(store_dir)
    if not names:
        return []
    dest = os.path.join(store_dir, DB_DIR)
    problems = [f"{name} is not a plain file" for name in names if not _plain_file(os.path.join(store_dir, name))]
    problems += [f"{name} is in {DB_DIR}/ too" for name in names if os.path.lexists(os.path.join(dest, name))]
    if os.path.lexists(dest) and (os.path.islink(dest) or not os.path.isdir(dest)):
        problems.append(f"{DB_DIR} is not a plain folder")
    if problems:
        raise StoreError(
            f"the databases of {store_dir} cannot move into {DB_DIR}/: {'; '.join(problems)}. Move or remove what is "
            f"named (a backup was taken first), then run again. Nothing was moved."
        )
    if not os.path.isdir(dest):
        os.mkdir(dest, 0o700)
    os.chmod(dest, db_dir_mode)
    moved = []
    _move(names, store_dir, dest, moved)
    for name in DATABASES:
        if os.path.isfile(os.path.join(dest, name)):
            os.chmod(os.path.join(dest, name), db_mode)
    return moved


def _plain_file(path):
    return os.path.isfile(path) and not os.path.islink(path)
